// dicyc/core/error.hpp -- typed exceptions and the always-on DICYC_CHECK.
//
// DICYC_CHECK(cond, ErrorType, message-stream) throws ErrorType with the streamed message when
// cond is false. It is never compiled out: every public entry point validates shapes before any
// Eigen expression touches memory. Messages follow PyTorch's style and name the module, e.g.
//   Conv 'g_ab.down1': expected input with 64 channels (weight [128, 64, 3, 3]), but got input
//   of shape [128, 64, 64, 1] instead
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace dicyc {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
class ShapeError : public Error {
 public:
  using Error::Error;
};
class ConfigError : public Error {
 public:
  using Error::Error;
};
class IoError : public Error {
 public:
  using Error::Error;
};
class SerializationError : public Error {
 public:
  using Error::Error;
};
class DeviceError : public Error {
 public:
  using Error::Error;
};
class NumericError : public Error {
 public:
  using Error::Error;
};

}  // namespace dicyc

#define DICYC_CHECK(cond, ErrorType, msg)          \
  do {                                             \
    if (!(cond)) {                                 \
      std::ostringstream dicyc_check_os_;          \
      dicyc_check_os_ << msg;                      \
      throw ErrorType(dicyc_check_os_.str());      \
    }                                              \
  } while (0)
