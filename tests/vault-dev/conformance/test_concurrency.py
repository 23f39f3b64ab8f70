"""500 concurrent database/creds reads from 50 threads, each with its own HTTP session."""

import concurrent.futures
import threading
import time
import unittest

import hvac.exceptions

from vaultdev_fixture import OWNER_CREATION, OWNER_REVOCATION, VaultDevTestCase, wait_for

TOTAL = 500
WORKERS = 50


class ConcurrencyTest(VaultDevTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.setup_engine(allowed_roles="load-role", roles={
            "load-role": dict(creation_statements=OWNER_CREATION, revocation_statements=OWNER_REVOCATION,
                              default_ttl="1h", max_ttl="24h"),
        })
        cls.root.sys.create_or_update_policy(
            "load-client", 'path "database/creds/load-role" {\n  capabilities = ["read"]\n}\n')

    def test_500_concurrent_creds(self):
        token = self.root.auth.token.create(policies=["load-client"])["auth"]["client_token"]
        local = threading.local()
        start = threading.Barrier(WORKERS)

        def one(i):
            if not hasattr(local, "client"):
                local.client = self.client(token=token)  # own requests.Session per thread
                try:
                    start.wait(timeout=30)
                except threading.BrokenBarrierError:
                    pass
            resp = local.client.secrets.database.generate_credentials("load-role")
            return resp["lease_id"], resp["data"]["username"], resp["data"]["password"], resp["lease_duration"]

        t0 = time.time()
        with concurrent.futures.ThreadPoolExecutor(max_workers=WORKERS) as pool:
            futures = [pool.submit(one, i) for i in range(TOTAL)]
            results, failures = [], []
            for f in futures:
                try:
                    results.append(f.result(timeout=300))
                except Exception as e:  # collect, report them all
                    failures.append(repr(e))
        elapsed = time.time() - t0
        self.assertEqual(failures, [], "%d of %d requests failed (%.1fs)" % (len(failures), TOTAL, elapsed))
        self.assertEqual(len(results), TOTAL)
        lease_ids = {r[0] for r in results}
        usernames = {r[1] for r in results}
        passwords = {r[2] for r in results}
        self.assertEqual(len(lease_ids), TOTAL)
        self.assertEqual(len(usernames), TOTAL)
        self.assertEqual(len(passwords), TOTAL)
        self.assertEqual({r[3] for r in results}, {3600})
        for name in usernames:
            self.assertTrue(name.startswith("v-token-to-load-rol-"), name)
        for _, _, password, _ in results:
            self.assertPassword(password)
        self.assertEqual(self.pg.count_existing(usernames), TOTAL)
        self.assertTrue(lease_ids <= self.vault.dev_lease_ids())
        keys = self.root.sys.list_leases("database/creds/load-role/")["data"]["keys"]
        self.assertEqual(len(keys), TOTAL)

        # And all of them go away with their token.
        self.assertEqual(self.client(token=token).auth.token.revoke_self().status_code, 204)
        wait_for(lambda: self.pg.count_existing(usernames) == 0, timeout=120,
                 what="the 500 SQL users to be dropped")
        wait_for(lambda: not (lease_ids & self.vault.dev_lease_ids()), timeout=60,
                 what="the 500 leases to be gone")

    def test_revoke_token_during_concurrent_reads(self):
        """A lease dies with its token: creds obtained while the token is being revoked must not
        outlive it (no orphaned lease, no SQL user left behind)."""
        resp = self.root.auth.token.create(policies=["load-client"])
        token, accessor = resp["auth"]["client_token"], resp["auth"]["accessor"]
        local = threading.local()
        stop = threading.Event()
        got, refused, other = [], [], []

        def reader():
            if not hasattr(local, "client"):
                local.client = self.client(token=token)
            while not stop.is_set():
                try:
                    r = local.client.secrets.database.generate_credentials("load-role")
                    got.append((r["lease_id"], r["data"]["username"]))
                except hvac.exceptions.Forbidden:
                    refused.append(1)
                    return
                except Exception as e:
                    other.append(repr(e))
                    return

        threads = [threading.Thread(target=reader) for _ in range(20)]
        for t in threads:
            t.start()
        wait_for(lambda: len(got) >= 40, timeout=60, what="40 credentials before revoking")
        self.assertEqual(self.root.auth.token.revoke_accessor(accessor).status_code, 204)
        for t in threads:
            t.join(timeout=60)
        stop.set()
        self.assertEqual(other, [])
        self.assertEqual(len(refused), 20)  # every reader ended with 403
        usernames = {u for _, u in got}
        lease_ids = {l for l, _ in got}
        wait_for(lambda: not any(e["token_accessor"] == accessor for e in self.vault.dev_leases()),
                 timeout=60, what="every lease of the revoked token to be gone")
        wait_for(lambda: self.pg.count_existing(usernames) == 0, timeout=60,
                 what="every SQL user of the revoked token to be dropped")
        self.assertFalse(lease_ids & self.vault.dev_lease_ids())


if __name__ == "__main__":
    unittest.main()
