"""conf/kubernetes/ agrees with conf/vaultwire-sidecar.toml (README "Sidecar").

The manifests and the sidecar configuration name the same paths, ids and names in
different files; a change to one that the other does not follow gives a pod that starts
and cannot serve. Read with PyYAML and tomllib, nothing is applied to a cluster:

  - the ConfigMap's vaultwire.toml is conf/vaultwire-sidecar.toml, word for word, and
    the path vaultwire's --config names is where the Deployment mounts that key;
  - an emptyDir is mounted at the listener's unix_socket directory in both containers;
  - [vault.auth] jwt_file is a projected service-account token mounted in the vaultwire
    container, and no service-account token reaches the application container;
  - the application's runAsUser is a [[listener.peer]] uid, and its DATABASE_URL names
    the socket directory, the listener's port and a role that peer may use, with no
    password;
  - vaultwire runs as non-root with a read-only root filesystem.

Run: /usr/bin/python3 -m unittest -v test_kubernetes (in tests/packaging/), or ctest -R
packaging.kubernetes. VAULTWIRE_SOURCE_DIR overrides the source tree it reads.
"""

import os
import posixpath
import tomllib
import unittest
import urllib.parse

import yaml

SOURCE_DIR = os.environ.get(
    "VAULTWIRE_SOURCE_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SIDECAR_TOML = os.path.join(SOURCE_DIR, "conf", "vaultwire-sidecar.toml")
MANIFESTS = os.path.join(SOURCE_DIR, "conf", "kubernetes")
# [vault.auth] jwt_file's default for method = "kubernetes".
DEFAULT_JWT_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/token"
# Where Kubernetes mounts a service account's token when it automounts one.
AUTOMOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def load_manifests():
    objects = []
    for name in sorted(os.listdir(MANIFESTS)):
        if name.endswith((".yaml", ".yml")):
            with open(os.path.join(MANIFESTS, name), encoding="utf-8") as f:
                objects.extend(doc for doc in yaml.safe_load_all(f) if doc is not None)
    return objects


def one(objects, kind):
    found = [o for o in objects if o.get("kind") == kind]
    if len(found) != 1:
        raise AssertionError(f"want one {kind} in {MANIFESTS}, found {len(found)}")
    return found[0]


def mount_for(container, path):
    """The volumeMount whose mountPath holds `path` (the deepest one), or None."""
    best = None
    for m in container.get("volumeMounts", []):
        mp = m["mountPath"].rstrip("/")
        if path == mp or path.startswith(mp + "/"):
            if best is None or len(mp) > len(best["mountPath"].rstrip("/")):
                best = m
    return best


class SidecarManifests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(SIDECAR_TOML, "rb") as f:
            cls.toml_bytes = f.read()
        cls.config = tomllib.loads(cls.toml_bytes.decode("utf-8"))
        cls.objects = load_manifests()
        cls.deployment = one(cls.objects, "Deployment")
        cls.configmap = one(cls.objects, "ConfigMap")
        cls.pod = cls.deployment["spec"]["template"]["spec"]
        cls.volumes = {v["name"]: v for v in cls.pod.get("volumes", [])}
        containers = cls.pod.get("initContainers", []) + cls.pod.get("containers", [])
        vaultwire = [c for c in containers if c.get("image", "").startswith("vaultwire:")]
        others = [c for c in containers if c not in vaultwire]
        if len(vaultwire) != 1 or len(others) != 1:
            raise AssertionError("want one container with image vaultwire:... and one application container, "
                                 f"found {[c.get('name') for c in vaultwire]} and {[c.get('name') for c in others]}")
        cls.vaultwire, cls.app = vaultwire[0], others[0]
        listeners = cls.config.get("listener", [])
        if len(listeners) != 1:
            raise AssertionError(f"want one [[listener]] in {SIDECAR_TOML}, found {len(listeners)}")
        cls.listener = listeners[0]
        cls.socket_dir = cls.listener["unix_socket"].rstrip("/")
        cls.port = int(cls.listener.get("bind", "127.0.0.1:26257").rsplit(":", 1)[1])

    def container_value(self, container, key):
        """A securityContext field of the container, else of the pod."""
        return container.get("securityContext", {}).get(key, self.pod.get("securityContext", {}).get(key))

    def test_configmap_holds_the_sidecar_config_where_vaultwire_reads_it(self):
        self.assertEqual(self.configmap["data"]["vaultwire.toml"].encode("utf-8"), self.toml_bytes,
                         "the ConfigMap's vaultwire.toml differs from conf/vaultwire-sidecar.toml")
        argv = self.vaultwire.get("command", []) + self.vaultwire.get("args", [])
        self.assertIn("--config", argv)
        config_path = argv[argv.index("--config") + 1]
        mount = mount_for(self.vaultwire, config_path)
        self.assertIsNotNone(mount, f"nothing is mounted at --config {config_path}")
        self.assertNotIn("subPath", mount)
        relative = posixpath.relpath(config_path, mount["mountPath"])
        volume = self.volumes[mount["name"]]
        sources = volume["projected"]["sources"] if "projected" in volume else [volume]
        items = [item for s in sources if s.get("configMap", {}).get("name") == self.configmap["metadata"]["name"]
                 for item in s["configMap"].get("items", [{"key": k, "path": k} for k in self.configmap["data"]])]
        self.assertIn({"key": "vaultwire.toml", "path": relative}, items,
                      f"{config_path} is not the ConfigMap's vaultwire.toml in volume {mount['name']}")

    def test_socket_directory_is_a_shared_emptydir(self):
        self.assertEqual(self.listener.get("client_auth"), "peer")
        names = []
        for container in (self.vaultwire, self.app):
            mount = next((m for m in container.get("volumeMounts", [])
                          if m["mountPath"].rstrip("/") == self.socket_dir), None)
            self.assertIsNotNone(mount, f"container {container['name']} does not mount {self.socket_dir}")
            self.assertNotIn("subPath", mount)
            self.assertIn("emptyDir", self.volumes[mount["name"]], f"{mount['name']} is not an emptyDir")
            names.append(mount["name"])
        self.assertEqual(names[0], names[1], "the two containers mount different volumes at the socket directory")
        self.assertFalse(next(m for m in self.vaultwire["volumeMounts"]
                              if m["name"] == names[0]).get("readOnly", False),
                         "vaultwire cannot create its socket in a read-only mount")

    def test_jwt_file_is_a_projected_token_for_vaultwire_alone(self):
        auth = self.config["vault"]["auth"]
        self.assertEqual(auth["method"], "kubernetes")
        jwt_file = auth.get("jwt_file", DEFAULT_JWT_FILE)
        mount = mount_for(self.vaultwire, jwt_file)
        self.assertIsNotNone(mount, f"jwt_file {jwt_file} is not mounted in the vaultwire container")
        volume = self.volumes[mount["name"]]
        tokens = [s["serviceAccountToken"] for s in volume.get("projected", {}).get("sources", [])
                  if "serviceAccountToken" in s]
        self.assertIn(posixpath.relpath(jwt_file, mount["mountPath"]), [t["path"] for t in tokens],
                      f"volume {mount['name']} projects no service-account token at {jwt_file}")
        # The application holds no secret: no automounted token, and not vaultwire's.
        account = self.pod.get("serviceAccountName")
        sa = next(o for o in self.objects if o.get("kind") == "ServiceAccount" and o["metadata"]["name"] == account)
        automount = self.pod.get("automountServiceAccountToken", sa.get("automountServiceAccountToken", True))
        self.assertFalse(automount, "every container, the application's too, gets a service-account token")
        self.assertNotIn(mount["name"], [m["name"] for m in self.app.get("volumeMounts", [])])
        self.assertIsNone(mount_for(self.app, AUTOMOUNT_DIR))

    def test_service_account_names_agree(self):
        namespace = self.deployment["metadata"].get("namespace")
        sa = one(self.objects, "ServiceAccount")
        self.assertEqual(self.pod.get("serviceAccountName"), sa["metadata"]["name"])
        self.assertEqual(sa["metadata"].get("namespace"), namespace)
        self.assertEqual(self.configmap["metadata"].get("namespace"), namespace)
        binding = one(self.objects, "ClusterRoleBinding")
        self.assertIn({"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": namespace},
                      binding["subjects"])

    def test_app_uid_is_a_listed_peer(self):
        uid = self.container_value(self.app, "runAsUser")
        peers = self.listener.get("peer", [])
        self.assertIn(uid, [p.get("uid") for p in peers],
                      f"the application's runAsUser {uid} is no [[listener.peer]] uid")
        self.assertNotEqual(uid, 0)
        self.assertIs(self.container_value(self.app, "allowPrivilegeEscalation"), False)

    def test_database_url_names_the_socket_and_port(self):
        env = {e["name"]: e.get("value") for e in self.app.get("env", [])}
        self.assertIn("DATABASE_URL", env)
        url = urllib.parse.urlsplit(env["DATABASE_URL"])
        query = urllib.parse.parse_qs(url.query)
        self.assertEqual(url.scheme, "postgresql")
        self.assertEqual(query.get("host"), [self.socket_dir], "host= is not the listener's unix_socket")
        self.assertEqual(query.get("port"), [str(self.port)], "port= is not the listener's port")
        self.assertIsNone(url.password, "the application's URL holds a password")
        self.assertNotIn("password", query)
        uid = self.container_value(self.app, "runAsUser")
        roles = [r for p in self.listener.get("peer", []) if p.get("uid") == uid for r in p.get("roles", [])]
        self.assertIn(url.username, roles, f"user {url.username} is no role of the peer with uid {uid}")
        self.assertIn(url.username, self.config["route"][self.listener["route"]]["roles"])

    def test_vaultwire_runs_unprivileged(self):
        self.assertTrue(self.container_value(self.vaultwire, "runAsNonRoot"))
        self.assertNotEqual(self.container_value(self.vaultwire, "runAsUser"), 0)
        self.assertIs(self.container_value(self.vaultwire, "readOnlyRootFilesystem"), True)
        self.assertIs(self.container_value(self.vaultwire, "allowPrivilegeEscalation"), False)


if __name__ == "__main__":
    unittest.main()
