// dicyc/model/alignment.hpp -- the alignment-loss hook of the CycleGAN-type models.
//
// An alignment loss compares a source image with the generator's (undeformed) output:
//   value = L(source, output), and weight * dL/d output is ACCUMULATED into *d_output.
// The built-in kinds are the paper's: 1 - NMI (soft, Parzen windows), 1 - GCC (gradient
// correlation), and MIND (mean absolute descriptor difference). A research user can install
// any other function with the same signature (CycleGan::set_alignment).
#pragma once

#include <functional>
#include <string>

#include "dicyc/loss/gcc.hpp"
#include "dicyc/loss/mind.hpp"
#include "dicyc/loss/nmi.hpp"

namespace dicyc::model {

enum class AlignKind { None, Nmi, Gcc, Mind };

inline const char* align_name(AlignKind k) {
  switch (k) {
    case AlignKind::Nmi: return "nmi";
    case AlignKind::Gcc: return "gcc";
    case AlignKind::Mind: return "mind";
    default: return "none";
  }
}
inline AlignKind parse_align(const std::string& s) {
  for (AlignKind k : {AlignKind::None, AlignKind::Nmi, AlignKind::Gcc, AlignKind::Mind})
    if (s == align_name(k)) return k;
  DICYC_CHECK(false, ConfigError, "unknown alignment loss '" << s << "' (expected none, nmi, gcc or mind)");
  return AlignKind::None;
}

class AlignmentOptions {
 public:
  AlignmentOptions& kind(AlignKind v) { kind_ = v; return *this; }
  AlignmentOptions& weight(double v) { weight_ = v; return *this; }
  AlignmentOptions& nmi(loss::NmiOptions v) { nmi_ = v; return *this; }
  AlignmentOptions& mind(loss::MindOptions v) { mind_ = v; return *this; }
  AlignKind kind() const { return kind_; }
  double weight() const { return weight_; }
  const loss::NmiOptions& nmi() const { return nmi_; }
  const loss::MindOptions& mind() const { return mind_; }

 private:
  AlignKind kind_ = AlignKind::None;
  double weight_ = 0.9;
  loss::NmiOptions nmi_;
  loss::MindOptions mind_;
};

template <int Dim, class S, class Device>
using AlignmentFn = std::function<double(core::Context<Device>& ctx, const ConstTensorMap<S, Dim + 2>& source,
                                         const ConstTensorMap<S, Dim + 2>& output, TensorMap<S, Dim + 2>* d_output,
                                         double weight)>;

/// The built-in loss of kind o.kind() (an empty function for None).
template <int Dim, class S, class Device>
AlignmentFn<Dim, S, Device> make_alignment(const AlignmentOptions& o) {
  using CM = ConstTensorMap<S, Dim + 2>;
  using M = TensorMap<S, Dim + 2>;
  switch (o.kind()) {
    case AlignKind::Nmi: {
      const loss::NmiOptions no = o.nmi();
      return [no](core::Context<Device>& ctx, const CM& src, const CM& out, M* d, double w) {
        return static_cast<double>(loss::nmi_loss<S, Dim + 2>(ctx, src, out, no, {nullptr, d, w}));
      };
    }
    case AlignKind::Gcc:
      return [](core::Context<Device>& ctx, const CM& src, const CM& out, M* d, double w) {
        return static_cast<double>(loss::gcc_loss<Dim, S>(ctx, src, out, {nullptr, d, w}));
      };
    case AlignKind::Mind: {
      const loss::MindOptions mo = o.mind();
      return [mo](core::Context<Device>& ctx, const CM& src, const CM& out, M* d, double w) {
        return static_cast<double>(loss::mind_loss<Dim, S>(ctx, src, out, mo, {nullptr, d, w}));
      };
    }
    default: return {};
  }
}

}  // namespace dicyc::model
