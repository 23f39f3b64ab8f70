// Awaiting credential_broker::acquire from an Asio coroutine (the session).
//
// This header includes Asio: include it only from .cpp files that run coroutines,
// never from another header.
//
//   broker_result<credential_lease> lease = co_await async_acquire(broker, std::move(request));
//
// With `refused` (a lease the upstream answered 28P01 for) it is broker.refetch().
//
// The broker's callback runs on the calling thread (answer known at once) or on a
// vault_client pool thread; either way the coroutine resumes on its own executor
// (the one it was co_spawned on) through a post, never inline inside acquire() and
// never on a pool thread. `broker` must outlive the call.
#pragma once

#include <memory>
#include <utility>

#include "credentials/broker.hpp"
#include "net/asio.hpp"

namespace vaultwire {

// The initiation lambda captures nothing: g++ 12 mishandles lambdas with owning
// captures (an executor holds a shared_ptr) inside coroutine frames. The executor
// to resume on is the handler's own.
inline boost::asio::awaitable<broker_result<credential_lease>> async_acquire(credential_broker& broker,
                                                                            credential_request request,
                                                                            credential_lease* refused = nullptr) {
  return boost::asio::async_initiate<const boost::asio::use_awaitable_t<>&, void(broker_result<credential_lease>)>(
      [](auto handler, credential_broker* b, credential_request req, credential_lease* old) {
        auto executor = boost::asio::get_associated_executor(handler);
        // std::function needs a copyable callable; the awaitable handler is move-only.
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        auto done = [shared, executor](broker_result<credential_lease> r) {
          // The result holds a move-only handle: carry it in a shared_ptr through post.
          auto result = std::make_shared<broker_result<credential_lease>>(std::move(r));
          boost::asio::post(executor, [shared, result] { (*shared)(std::move(*result)); });
        };
        if (old != nullptr)
          b->refetch(*old, std::move(req), std::move(done));
        else
          b->acquire(std::move(req), std::move(done));
      },
      boost::asio::use_awaitable, &broker, std::move(request), refused);
}

}  // namespace vaultwire
