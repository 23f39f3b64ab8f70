# Runs at install time (install(CODE) includes it), because where the configuration
# goes depends on the install prefix, which cmake --install --prefix and cpack choose
# after configure:
#   prefix /usr (the .deb):  /etc/vaultwire/vaultwire.toml, /etc/vaultwire/credentials/,
#                            /usr/lib/systemd/system/vaultwire.service
#   any other prefix P:      P/etc/vaultwire/..., P/lib/systemd/system/vaultwire.service
# The unit in conf/ names /usr/bin/vaultwire and /etc/vaultwire; for another prefix the
# installed copy names P/bin/vaultwire and P/etc/vaultwire instead.
# In: VAULTWIRE_SOURCE_DIR, VAULTWIRE_BINARY_DIR, and CMake's CMAKE_INSTALL_PREFIX.
# file(INSTALL) prepends $ENV{DESTDIR} and records each file in the install manifest.
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(confdir "/etc/vaultwire")
else()
  set(confdir "${CMAKE_INSTALL_PREFIX}/etc/vaultwire")
endif()

file(INSTALL "${VAULTWIRE_SOURCE_DIR}/conf/vaultwire.toml" DESTINATION "${confdir}"
     PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)

# Secrets for the unit's LoadCredential=; root only. Shipped empty.
set(empty "${VAULTWIRE_BINARY_DIR}/packaging/credentials")
file(MAKE_DIRECTORY "${empty}")
file(INSTALL "${empty}" DESTINATION "${confdir}"
     DIRECTORY_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE)

file(READ "${VAULTWIRE_SOURCE_DIR}/conf/vaultwire.service" unit)
string(REPLACE "/usr/bin/vaultwire" "${CMAKE_INSTALL_PREFIX}/bin/vaultwire" unit "${unit}")
string(REPLACE "/etc/vaultwire" "${confdir}" unit "${unit}")
set(unit_copy "${VAULTWIRE_BINARY_DIR}/packaging/vaultwire.service")
file(WRITE "${unit_copy}" "${unit}")
file(INSTALL "${unit_copy}" DESTINATION "${CMAKE_INSTALL_PREFIX}/lib/systemd/system"
     PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
