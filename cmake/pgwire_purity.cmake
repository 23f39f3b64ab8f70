# Fails when a pgwire source or header includes networking, Asio, logging or
# console output. Run by the pgwire_purity target before pgwire builds.
file(GLOB_RECURSE files "${DIR}/src/*" "${DIR}/include/*")
set(forbidden
  "#include[ \t]*<(boost/)?asio"
  "#include[ \t]*<boost/beast"
  "#include[ \t]*<sys/socket\\.h>"
  "#include[ \t]*<netinet/"
  "#include[ \t]*<arpa/"
  "#include[ \t]*<netdb\\.h>"
  "#include[ \t]*<spdlog"
  "#include[ \t]*<iostream>"
  "#include[ \t]*<openssl/ssl\\.h>"
  "#include[ \t]*<curl/")
set(bad "")
foreach(f IN LISTS files)
  file(READ "${f}" text)
  foreach(pattern IN LISTS forbidden)
    if(text MATCHES "${pattern}")
      string(APPEND bad "\n  ${f}: matches ${pattern}")
    endif()
  endforeach()
endforeach()
if(bad)
  message(FATAL_ERROR "pgwire must stay pure (bytes in, values or errors out):${bad}")
endif()
file(TOUCH "${STAMP}")
