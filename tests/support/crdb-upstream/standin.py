"""A crdb-upstream process for tests: started with its flags, ready once it printed its
listening line; its stderr log in a file. Shared by the stand-in's self-test and the
end-to-end tests that put it behind vaultwire."""
import os
import re
import select
import subprocess

STAND_IN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "crdb-upstream")


class StandIn:
    LISTENING_RE = re.compile(r"^crdb-upstream listening on 127\.0\.0\.1:(\d+)$")

    def __init__(self, env_file, workdir, *flags, log_name="crdb-upstream.log"):
        """env_file: the pg-harness DIR/env file; workdir: where the log goes."""
        self.cmd = ["/usr/bin/python3", STAND_IN, "--harness-env", env_file, "--listen", "127.0.0.1:0"] + list(flags)
        self.log_path = os.path.join(workdir, log_name)
        self.proc = None
        self.log = None
        self.port = None

    def start(self, timeout=30.0):
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=self.log, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline().strip() if ready else ""
        m = self.LISTENING_RE.match(line)
        if not m:
            self.stop()
            raise AssertionError("no readiness line from crdb-upstream (got %r):\n%s" % (line, self.output()))
        self.port = int(m.group(1))
        return self

    def stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc.stdout.close()
            self.proc = None
        if self.log is not None:
            self.log.close()
            self.log = None

    def output(self):
        with open(self.log_path) as f:
            return f.read()

    def logins(self, user):
        """(database, options, cluster) of each accepted login of `user`, as relayed."""
        return re.findall(r"crdb-upstream: login user=%s database=(\S*) options=(.*) cluster=(\S+)$" % re.escape(user),
                          self.output(), re.M)
