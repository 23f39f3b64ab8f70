"""A Vault token without a lease, end to end through vaultwire, vault-dev and PostgreSQL.

A root token from `vault operator init` or generate-root has no lease: its lookup-self
carries no `renewable` (token_store.go handleLookup sets it only from lease times).
vaultwire must take such a token as valid on every recheck, not as a malformed answer:
with token_recheck = 1s and token_grace = 2s, a session and a new login still work
after several rechecks spanning more than the grace.
"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_fixture import ProxyTestCase, wait_for  # noqa: E402


class LeaselessRootTokenTest(ProxyTestCase):
    credentials_settings = {"token_recheck": "1s", "token_grace": "2s"}

    def lookups(self):
        return self.vault.dev("GET", "counters")["paths"].get("auth/token/lookup-self", 0)

    def test_a_root_token_without_a_lease_passes_its_rechecks(self):
        token = self.vault.dev("POST", "root-token")["token"]
        self.assertNotIn("renewable", self.vault.client(token=token).auth.token.lookup_self()["data"])
        conn = self.connect(token=token)
        try:
            with conn.cursor() as cur:
                cur.execute("select session_user")
                user = cur.fetchone()[0]
            self.assertTrue(user.startswith("v-"), user)
            start = self.lookups()
            # Four more rechecks of the live session's token, one per token_recheck: more
            # than token_grace since the first of them.
            wait_for(lambda: self.lookups() >= start + 4, timeout=60, what="four rechecks of the token")
            with conn.cursor() as cur:
                cur.execute("select 1")
                self.assertEqual(cur.fetchone()[0], 1)
            second = self.connect(token=token)
            second.close()
        finally:
            conn.close()
        self.assertNotIn("recheck of", self.proxy.output(), "no recheck may have failed")


if __name__ == "__main__":
    unittest.main()
