// Awaiting vault_client calls from an Asio coroutine.
//
// This header includes Asio: include it only from the .cpp files that run
// coroutines (credentials, session), never from another header.
//
//   auto creds = co_await async_vault<vault_credential>([&](auto done) {
//     client.read_credentials(mount, role, token.clone(), std::move(done));
//   });
//
// `start` receives a vault_client::callback<T> and must hand it to exactly one
// vault_client call. The blocking HTTP exchange runs on the client's pool; the
// coroutine resumes on its own executor (the one it was co_spawned on), never on a
// pool thread. References captured by `start` are used only before the first
// suspension, so capturing the coroutine's locals by reference is safe.
#pragma once

#include <memory>
#include <utility>

#include "net/asio.hpp"
#include "vault/vault_client.hpp"

namespace vaultwire {

template <class T, class Start>
boost::asio::awaitable<vault_result<T>> async_vault(Start start) {
  auto executor = co_await boost::asio::this_coro::executor;
  co_return co_await boost::asio::async_initiate<const boost::asio::use_awaitable_t<>&, void(vault_result<T>)>(
      [executor](auto handler, Start start_call) {
        // std::function needs a copyable callable; the awaitable handler is move-only.
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        start_call(typename vault_client::callback<T>([shared, executor](vault_result<T> r) {
          boost::asio::post(executor, [shared, r = std::move(r)]() mutable { (*shared)(std::move(r)); });
        }));
      },
      boost::asio::use_awaitable, std::move(start));
}

}  // namespace vaultwire
