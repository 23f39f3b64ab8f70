// Umbrella header for the pgwire codec (framing, the streaming framer, messages,
// encoder, SQLSTATEs).
// SCRAM and MD5 have their own headers.
#pragma once

#include "pgwire/decoder.hpp"
#include "pgwire/encoder.hpp"
#include "pgwire/errc.hpp"
#include "pgwire/frame.hpp"
#include "pgwire/framer.hpp"
#include "pgwire/messages.hpp"
#include "pgwire/sqlstate.hpp"
