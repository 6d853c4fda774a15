// The one place Boost.Asio is included. Boost 1.74's Asio coroutine support needs
// <utility> first under g++ 12; clang 14 with libstdc++ needs the two defines.
#pragma once

#include <utility>
#if defined(__clang__)
#ifndef BOOST_ASIO_HAS_CO_AWAIT
#define BOOST_ASIO_HAS_CO_AWAIT 1
#endif
#ifndef BOOST_ASIO_HAS_STD_COROUTINE
#define BOOST_ASIO_HAS_STD_COROUTINE 1
#endif
#endif
#include <boost/asio.hpp>
