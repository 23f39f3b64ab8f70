// The `vaultwire provision` subcommand's flags (CLI11). Included by main.cpp only;
// the logic is in provision.cpp.
#pragma once

#include <CLI/CLI.hpp>

#include "vaultwire/provision.hpp"

namespace vaultwire {

// --vaultwire-auth and its per-method flags (see provision_auth.cpp).
inline void add_provision_auth_flags(CLI::App* cmd, provision_options& o) {
  cmd->add_option("--vaultwire-auth", o.vaultwire_auth,
                  "instead of a token file, set up an auth method vaultwire logs in with (its [vault.auth]): a role "
                  "with the vaultwire policy and periodic service tokens")
      ->check(CLI::IsMember({"approle", "kubernetes", "jwt", "cert"}));
  cmd->add_option("--vaultwire-auth-mount", o.vaultwire_auth_mount, "the auth method's mount (default: its name)");
  cmd->add_option("--vaultwire-auth-role", o.vaultwire_auth_role, "the role (cert: certs/NAME) vaultwire logs in as")
      ->capture_default_str();
  cmd->add_option("--vaultwire-token-period", o.vaultwire_token_period,
                  "token_period of vaultwire's login tokens: renewed within it, without end")
      ->capture_default_str();
  cmd->add_option("--role-id-file", o.role_id_file, "approle: write the role ID here (0600)");
  cmd->add_option("--secret-id-file", o.secret_id_file,
                  "approle: write a secret ID here (0600); kept when the file holds one Vault still knows");
  cmd->add_option("--kubernetes-host", o.kubernetes_host, "kubernetes: the API server's URL (kubernetes_host)");
  cmd->add_option("--kubernetes-ca-file", o.kubernetes_ca_file, "kubernetes: the API server's CA (PEM)");
  cmd->add_option("--kubernetes-pem-keys-file", o.kubernetes_pem_keys_file,
                  "kubernetes: PEM public keys that verify service account tokens (pem_keys); real Vault asks the "
                  "TokenReview API and needs none, vault-dev needs them");
  cmd->add_option("--service-account", o.service_account, "kubernetes: bound_service_account_names")
      ->capture_default_str();
  cmd->add_option("--namespace,--service-account-namespace", o.service_account_namespace,
                  "kubernetes: bound_service_account_namespaces (not Vault's namespace: VAULT_NAMESPACE)")
      ->capture_default_str();
  cmd->add_option("--jwt-validation-pubkey-file", o.jwt_validation_pubkey_file,
                  "jwt: PEM public keys that verify vaultwire's JWTs (jwt_validation_pubkeys)");
  cmd->add_option("--bound-claim", o.bound_claims, "jwt: KEY=VALUE the JWT must carry (bound_claims; repeatable)");
  cmd->add_option("--bound-audience", o.bound_audience, "jwt: the aud the JWT must name (bound_audiences)");
  cmd->add_option("--user-claim", o.user_claim, "jwt: the claim naming the user")->capture_default_str();
  cmd->add_option("--vaultwire-jwt-file", o.vaultwire_jwt_file,
                  "kubernetes, jwt: where vaultwire reads its JWT ([vault.auth] jwt_file; kubernetes default: the "
                  "service account token)");
  cmd->add_option("--vaultwire-client-cert", o.vaultwire_client_cert,
                  "cert: the certificate vaultwire presents to Vault; trusted as it is (certs/NAME)");
  cmd->add_option("--vaultwire-client-key", o.vaultwire_client_key, "cert: its key (only printed, never read)");
  cmd->add_option("--vaultwire-client-ca", o.vaultwire_client_ca,
                  "cert: trust this CA (PEM) instead of the certificate itself, bound to the certificate's CN "
                  "(allowed_common_names), so a renewed certificate keeps working");
}

inline CLI::App* add_provision_subcommand(CLI::App& app, provision_options& o) {
  auto* cmd = app.add_subcommand(
      "provision",
      "set up Vault for vaultwire once (the tutorial's admin phase): database engine, connection, role with "
      "an owner role, client policy, tokens; idempotent");
  cmd->add_option("--vault-addr", o.vault_addr, "Vault address (default: VAULT_ADDR)");
  cmd->add_option("--mount", o.mount, "mount path of the database secrets engine")->capture_default_str();
  cmd->add_option("--db-config", o.config_name, "name of the connection (<mount>/config/NAME)")
      ->capture_default_str();
  cmd->add_option("--role", o.role, "Vault role (<mount>/roles/NAME); clients give it as their user name")
      ->capture_default_str();
  cmd->add_option("--db-host", o.db_host, "the cluster's host (for Vault's connection and vaultwire's route)")
      ->required();
  cmd->add_option("--db-port", o.db_port, "the cluster's SQL port")->capture_default_str();
  cmd->add_option("--database", o.database, "database Vault connects to (and the clients' default)")
      ->capture_default_str();
  cmd->add_option("--sslmode", o.sslmode, "sslmode of Vault's connection")->capture_default_str();
  cmd->add_option("--sslrootcert", o.sslrootcert, "the cluster CA, as a path on the Vault server");
  cmd->add_option("--db-options", o.db_options,
                  "startup options, e.g. --cluster=NAME (CockroachDB Serverless): in the URL and the route");
  cmd->add_option("--connection-url", o.connection_url,
                  "Vault's connection_url as a template with {{username}} and {{password}} (instead of the "
                  "URL built from --db-host ... --db-options)");
  cmd->add_option("--admin-user", o.admin_user, "the database admin user Vault connects as")->required();
  cmd->add_option("--admin-password-file", o.admin_password_file,
                  "file holding the admin password, or - for stdin; read only when the connection is written");
  cmd->add_flag("--write-password", o.write_password,
                "write the connection (and the password) even when Vault's copy matches, e.g. after a rotation");
  cmd->add_option("--dialect", o.dialect,
                  "cockroachdb or postgresql: the SQL of the creation statements and the printed one-time SQL")
      ->required()
      ->check(CLI::IsMember({"cockroachdb", "postgresql"}));
  cmd->add_option("--owner-role", o.owner_role,
                  "NOLOGIN role (must exist in the database) that owns what dynamic users create")
      ->required();
  cmd->add_option("--grant", o.grants,
                  "privilege for the owner role in the printed one-time SQL, e.g. \"ALL ON DATABASE defaultdb\" "
                  "(repeatable); never part of each credential's creation statements");
  cmd->add_option("--default-ttl", o.default_ttl, "the role's default lease TTL")->capture_default_str();
  cmd->add_option("--max-ttl", o.max_ttl, "the role's max lease TTL")->capture_default_str();
  cmd->add_option("--policy", o.policy, "the client policy's name (default: <role>-client)");
  cmd->add_flag("--create-token", o.create_token, "mint a client token with the client policy");
  cmd->add_option("--client-token-file", o.client_token_file,
                  "where --create-token writes the token (mode 0600), or - for stdout (the report then goes to "
                  "stderr)");
  cmd->add_option("--token-ttl", o.token_ttl, "the client token's TTL (default: Vault's)");
  cmd->add_option("--vaultwire-token-file", o.vaultwire_token_file,
                  "write a token for vaultwire's own lease management (renew, revoke) here, mode 0600; kept when "
                  "the file already holds a valid one");
  cmd->add_option("--vaultwire-policy", o.vaultwire_policy, "its policy's name (default: <role>-vaultwire)");
  cmd->add_option("--vaultwire-token-ttl", o.vaultwire_token_ttl, "its TTL (default: Vault's)");
  add_provision_auth_flags(cmd, o);
  cmd->add_option("--listen", o.listen, "vaultwire's listener, for the printed URL and vaultwire.toml")
      ->capture_default_str();
  cmd->add_option("--route-name", o.route_name, "the [route.NAME] printed")->capture_default_str();
  cmd->add_option("--route-ca-file", o.route_ca_file, "the cluster CA for vaultwire (default: --sslrootcert)");
  cmd->add_option("--client-sslmode", o.client_sslmode, "sslmode in the printed client URL")
      ->capture_default_str();
  cmd->add_flag("--dry-run", o.dry_run, "print the requests a first run would send; send nothing");
  cmd->footer(
      "Vault: VAULT_ADDR, VAULT_TOKEN (else ~/.vault-token), VAULT_NAMESPACE, VAULT_CACERT.\n"
      "Tokens are minted with auth/token/create-orphan, so they outlive the administrator's\n"
      "token: its policy needs \"update\" on that path (no root or sudo needed).\n"
      "Each object is read first and written only when it differs; a second run reports\n"
      "\"unchanged\" for every step and writes nothing, unless a token is asked for.\n"
      "Secrets never reach argv, the report or errors: the admin password comes from a file or\n"
      "stdin, tokens go to 0600 files (or the client token alone to stdout with\n"
      "--client-token-file -). Exit status: 0 done, 1 a step failed (named, with Vault's text),\n"
      "2 bad options.");
  return cmd;
}

}  // namespace vaultwire
