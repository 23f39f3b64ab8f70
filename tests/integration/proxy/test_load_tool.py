"""vaultwire-load (issue 7 item 2) through vaultwire: tokens from a file and minted from
vault-dev, closed-loop queries and --reconnect, errors by SQLSTATE and the exit status,
the JSON report, and no token in the tool's output.

Environment: VAULTWIRE_LOAD_BIN (else bin/vaultwire-load next to VAULTWIRE_BIN).
"""
import json
import os
import subprocess
import unittest

from proxy_fixture import ProxyTestCase, scan_for_secrets


def load_bin():
    path = os.environ.get("VAULTWIRE_LOAD_BIN")
    if not path:
        path = os.path.join(os.path.dirname(os.environ["VAULTWIRE_BIN"]), "vaultwire-load")
    return path


class LoadToolTest(ProxyTestCase):
    pg_max_connections = 200

    def conninfo(self):
        return "host=127.0.0.1 port=%d user=crdb-role dbname=defaultdb sslmode=disable" % self.proxy.port

    def tokens_file(self, tokens, name):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write("\n".join(tokens) + "\n")
        os.chmod(path, 0o600)
        return path

    def run_load(self, *args, env=None, timeout=120):
        proc = subprocess.run([load_bin(), "--json"] + list(args) + [self.conninfo()],
                              capture_output=True, text=True, timeout=timeout, env=env)
        issued = self.vault.dev("GET", "secrets")
        secrets_ = [v for v in issued.get("tokens", []) + issued.get("passwords", []) if len(v) >= 8]
        self.assertIn(self.token, secrets_)
        self.assertEqual(scan_for_secrets(proc.stdout + proc.stderr, secrets_), [],
                         "vaultwire-load printed an issued secret")
        self.assertNotIn("runtime error: ", proc.stderr)
        self.assertNotIn("AddressSanitizer", proc.stderr)
        try:
            report = json.loads(proc.stdout)
        except ValueError:
            self.fail("report is not JSON (rc %d):\nstdout:\n%s\nstderr:\n%s" % (proc.returncode, proc.stdout,
                                                                                    proc.stderr))
        return proc, report

    def assertClean(self, proc, report):
        self.assertEqual(proc.returncode, 0, "stdout:\n%s\nstderr:\n%s" % (proc.stdout, proc.stderr))
        self.assertEqual(report["errors"], 0, report)
        self.assertEqual(report["errors_by_sqlstate"], {}, report)
        self.assertGreater(report["queries"], 0, report)
        self.assertGreater(report["queries_per_s"], 0, report)
        for kind in ("connect_to_first_result", "query"):
            lat = report["latency_ms"][kind]
            self.assertGreater(lat["count"], 0, report)
            self.assertTrue(0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"], report)

    def test_help(self):
        proc = subprocess.run([load_bin(), "--help"], capture_output=True, text=True, timeout=30)
        self.assertEqual(proc.returncode, 0)
        for word in ("--tokens-file", "--mint", "--policy", "--connections", "--rate", "--duration", "--query",
                     "--reconnect", "--json"):
            self.assertIn(word, proc.stdout)

    def test_no_tokens_is_a_usage_error(self):
        proc = subprocess.run([load_bin(), self.conninfo()], capture_output=True, text=True, timeout=30)
        self.assertEqual(proc.returncode, 2, proc.stderr)

    def test_fifty_connections_from_a_tokens_file(self):
        tokens = [self.token, self.make_token(["roach-client"])]
        proc, report = self.run_load("--tokens-file", self.tokens_file(tokens, "tokens.txt"),
                                     "-c", "50", "-T", "3")
        self.assertClean(proc, report)
        self.assertEqual(report["connections"], 50)
        self.assertEqual(report["connections_ok"], 50, report)
        self.assertEqual(report["latency_ms"]["connect_to_first_result"]["count"], 50, report)
        self.assertEqual(report["tokens"], 2)
        self.assertIn("queries/s", proc.stderr)  # the progress line

    def test_bad_token_is_counted_under_28P01(self):
        path = self.tokens_file(["hvs.not-a-token-at-all-000000"], "bad.txt")
        proc, report = self.run_load("--tokens-file", path, "-c", "3", "-T", "1")
        self.assertNotEqual(proc.returncode, 0)
        self.assertEqual(proc.returncode, 1)
        self.assertGreater(report["errors_by_sqlstate"].get("28P01", 0), 0, report)
        self.assertEqual(set(report["errors_by_sqlstate"]), {"28P01"}, report)
        self.assertEqual(report["errors"], report["errors_by_sqlstate"]["28P01"])
        self.assertEqual(report["queries"], 0, report)
        self.assertNotIn("hvs.not-a-token-at-all-000000", proc.stdout + proc.stderr)

    def test_query_error_is_counted_by_sqlstate(self):
        path = self.tokens_file([self.token], "one.txt")
        proc, report = self.run_load("--tokens-file", path, "-c", "2", "-T", "1", "-q", "SELECT 1/0")
        self.assertEqual(proc.returncode, 1)
        self.assertGreater(report["errors_by_sqlstate"].get("22012", 0), 0, report)
        self.assertEqual(report["queries"], 0, report)

    def test_reconnect(self):
        path = self.tokens_file([self.token], "one.txt")
        proc, report = self.run_load("--tokens-file", path, "-c", "4", "-T", "2", "--reconnect")
        self.assertClean(proc, report)
        self.assertTrue(report["reconnect"])
        # One connection per query.
        self.assertEqual(report["latency_ms"]["connect_to_first_result"]["count"], report["queries"], report)
        self.assertGreaterEqual(report["connections_ok"], report["queries"])
        self.assertGreater(report["queries"], 4, report)

    def test_rate_limits_new_connections(self):
        path = self.tokens_file([self.token], "one.txt")
        proc, report = self.run_load("--tokens-file", path, "-c", "2", "-T", "2", "--reconnect", "--rate", "10")
        self.assertClean(proc, report)
        # 10/s for 2 s, plus the first one.
        self.assertLessEqual(report["connections_started"], 22, report)
        self.assertGreaterEqual(report["connections_started"], 10, report)

    def test_mint_tokens_from_vault(self):
        before = set(self.vault.dev("GET", "secrets").get("tokens", []))
        env = dict(os.environ, VAULT_ADDR=self.vault.addr, VAULT_TOKEN=self.vault.root_token)
        proc, report = self.run_load("--mint", "3", "--policy", "roach-client", "-c", "6", "-T", "2", env=env)
        self.assertClean(proc, report)
        self.assertEqual(report["tokens"], 3)
        minted = set(self.vault.dev("GET", "secrets").get("tokens", [])) - before
        self.assertEqual(len(minted), 3, "vault-dev did not see 3 new tokens")
        self.assertEqual(scan_for_secrets(proc.stdout + proc.stderr, sorted(minted) + [self.vault.root_token]), [])

    def test_mint_without_vault_addr_is_a_setup_error(self):
        env = {k: v for k, v in os.environ.items() if k not in ("VAULT_ADDR", "VAULT_TOKEN")}
        proc = subprocess.run([load_bin(), "--mint", "1", "--policy", "roach-client", self.conninfo()],
                              capture_output=True, text=True, timeout=30, env=env)
        self.assertEqual(proc.returncode, 2)
        self.assertIn("VAULT_ADDR", proc.stderr)


if __name__ == "__main__":
    unittest.main()
