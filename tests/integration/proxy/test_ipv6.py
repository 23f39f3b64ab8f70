"""An IPv6 listener ([::1]:port) beside an IPv4 one, with psql through each."""
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_fixture import PSQL, ProxyTestCase, free_port  # noqa: E402


class Ipv6ListenerTest(ProxyTestCase):
    listeners = 2

    @classmethod
    def proxy_config(cls):
        cls.port6 = free_port()
        return f"""
[vault]
address = "{cls.vault.addr}"

[[listener]]
bind = "127.0.0.1:{cls.port}"
route = "main"

[[listener]]
bind = "[::1]:{cls.port6}"
route = "main"
{cls.route_config()}
{cls.broker_tables()}"""

    def psql_at(self, host, port):
        env = dict(os.environ, PGPASSWORD=self.token)
        return subprocess.run([PSQL, "-X", "-A", "-t", "-h", host, "-p", str(port), "-U", "crdb-role",
                               "-d", "defaultdb", "-c", "select inet_client_addr() is not null, session_user"],
                              env=env, capture_output=True, text=True, timeout=60)

    def test_psql_over_ipv6_and_ipv4(self):
        for host, port in (("::1", self.port6), ("127.0.0.1", self.port)):
            r = self.psql_at(host, port)
            self.assertEqual(r.returncode, 0, r.stderr + self.proxy.output())
            self.assertRegex(r.stdout.strip(), r"^t\|v-token-")
        self.assertRegex(self.proxy.output(), r"listening on \[::1\]:%d" % self.port6)
        self.assertRegex(self.proxy.output(), r"crdb-role@\[::1\]:\d+ session open")


if __name__ == "__main__":
    unittest.main()
