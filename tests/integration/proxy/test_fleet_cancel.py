"""[fleet] between two vaultwire processes, without a balancer: the cancel key of a
session names the instance that holds it (the secret's top 4 bits), and a
CancelRequest sent to the other instance is forwarded over mutual TLS and reaches the
server (57014). An unknown key penalises its source for a second (rate_limited).
test_fleet.py runs three instances behind HAProxy.

Run with /usr/bin/python3; environment as proxy_fixture.py.
"""
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_fixture import (ProxyTestCase, Raw, backend_key, cancel_request, error_fields,  # noqa: E402
                           free_port, make_listener_cert, query_message, wait_for)


def cancel_count(proxy, result):
    page = proxy.metrics_page()
    m = re.search(r'^vaultwire_cancel_requests_total\{result="%s"\} (\d+)' % result, page[1], re.M) if page else None
    return int(m.group(1)) if m else 0


class FleetCancelTest(ProxyTestCase):
    @classmethod
    def fleet_config(cls, port, admin_port, instance, bind, peer_id, peer_bind):
        extra = f"""
[admin]
bind = "127.0.0.1:{admin_port}"
[fleet]
instance_id = {instance}
bind = "127.0.0.1:{bind}"
ca_file = "{cls.ca}"
cert_file = "{cls.cert}"
key_file = "{cls.key}"
[[fleet.peer]]
id = {peer_id}
address = "127.0.0.1:{peer_bind}"
"""
        return cls.single_listener_config(port, extra=extra)

    @classmethod
    def proxy_config(cls):
        # One certificate (CN localhost, IP SAN 127.0.0.1) serves both instances: each
        # verifies the other's against the CA and presents it as its client certificate.
        cls.ca, cls.cert, cls.key = make_listener_cert(cls.tmp)
        cls.fleet_a, cls.fleet_b = free_port(), free_port()
        cls.port_b = free_port()
        return cls.fleet_config(cls.port, free_port(), 1, cls.fleet_a, 2, cls.fleet_b)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.proxy_b = cls.start_proxy(cls.fleet_config(cls.port_b, free_port(), 2, cls.fleet_b, 1, cls.fleet_a),
                                          name="vaultwire-b")
        except BaseException:
            cls._any_failure = True
            raise

    def sleeping(self):
        """A session on instance A running pg_sleep: (Raw, pid, secret) once the server shows it active."""
        r = Raw(self.proxy.port)
        pid, secret = backend_key(r.login(self.token))
        r.send(query_message("select pg_sleep(60)"))
        wait_for(lambda: self.pg.admin_query("select 1 from pg_stat_activity where state = 'active' and "
                                             "query = 'select pg_sleep(60)'"), what="pg_sleep running")
        return r, pid, secret

    def test_1_keys_name_their_instance(self):
        for proxy, instance in ((self.proxy, 1), (self.proxy_b, 2)):
            with Raw(proxy.port) as r:
                pid, secret = backend_key(r.login(self.token))
            self.assertEqual((secret & 0xffffffff) >> 28, instance)
        self.proxy.wait_log(r"fleet: instance 1 accepting forwarded cancels on 127\.0\.0\.1:%d \(mutual TLS\)"
                            % self.fleet_a, what="A's fleet listener")

    def test_2_a_cancel_sent_to_the_other_instance_reaches_the_server(self):
        sent_b, received_a = cancel_count(self.proxy_b, "peer_sent"), cancel_count(self.proxy, "peer_received")
        r, pid, secret = self.sleeping()
        try:
            with Raw(self.port_b) as c:
                c.send(cancel_request(pid, secret))
                self.assertTrue(c.closed_without_reply())
            r.sock.settimeout(30)
            msgs = r.read_until({"Z"})
            errors = [error_fields(body) for t, body in msgs if t == "E"]
            self.assertEqual([e["C"] for e in errors], ["57014"], errors)
        finally:
            r.close()
        self.assertEqual(cancel_count(self.proxy_b, "peer_sent"), sent_b + 1)
        wait_for(lambda: cancel_count(self.proxy, "peer_received") == received_a + 1, what="A's peer_received")
        self.assertEqual(cancel_count(self.proxy, "peer_unreachable"), 0)

    def test_3_an_unknown_key_penalises_its_source_for_a_second(self):
        unknown, limited = cancel_count(self.proxy, "unknown_key"), cancel_count(self.proxy, "rate_limited")
        # A key that names instance 1 itself, issued to nobody.
        for _ in range(2):
            with Raw(self.proxy.port) as c:
                c.send(cancel_request(4242, 0x11234567))
                self.assertTrue(c.closed_without_reply())
        self.assertEqual(cancel_count(self.proxy, "unknown_key"), unknown + 1)
        self.assertEqual(cancel_count(self.proxy, "rate_limited"), limited + 1)


if __name__ == "__main__":
    unittest.main()
