// The tools' view of a model: host buffers in and out, whatever device computes. The CPU
// implementation maps the host buffers directly; the GPU one (tools_gpu_*.cu, built into a
// separate shared library by nvcc) copies them to the device and back.
//
// Only standard types (and the scalar's storage type) cross this interface, and the GPU library
// is built with hidden visibility: Eigen code compiled by nvcc (no CPU SIMD, other alignment
// macros) must never be linked in place of the same inline functions compiled by g++.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <Eigen/Core>  // Eigen::half, the half storage type

#include "dicyc/dist/communicator.hpp"  // standard C++ only
#include "dicyc/model/losses.hpp"       // standard C++ only

namespace tools {

template <int Dim, class S>
class HostModel {
 public:
  using Shape = std::array<long, Dim + 2>;  // (C, spatial..., N)
  virtual ~HostModel() = default;
  /// One training iteration. A non-finite loss term is reported in *numeric_error (non-empty) and
  /// nothing else happens; every other error is thrown.
  virtual dicyc::model::StepLosses train_step(const S* x, const S* y, const Shape& s, std::string* numeric_error) = 0;
  /// The plain generator A -> B (ab) or B -> A.
  virtual void translate(bool ab, const S* x, S* y, const Shape& s) = 0;
  /// DiCyc's deformed output, A -> B (ab) or B -> A, in the pose of `other` (an image of the
  /// target domain); false (y untouched) for the models without deformation.
  virtual bool deform(bool ab, const S* x, const S* other, S* y, const Shape& s) = 0;
  /// The whole training state as the bytes of a checkpoint file (dicyc::train::checkpoint_image:
  /// weights, Adam moments, schedule, image pools with their RNGs, `extra` as "user.<key>"
  /// metadata), in host memory whatever device holds the model: the file itself is written on the
  /// g++ side (dicyc::train::write_checkpoint_image), by one component for every device.
  /// Collective with several ranks; ranks other than 0 get an empty buffer.
  virtual std::vector<unsigned char> state(const std::map<std::string, std::string>& extra) = 0;
  /// Restores a state(): the bytes of a checkpoint file (SafeTensorsFile::image() of the file the
  /// caller opened once), every tensor verified and checked before anything changes. Collective;
  /// `label` names it in errors.
  virtual void restore(std::vector<unsigned char> image, const std::string& label) = 0;
  /// Network weights only (dicyc-synth): a checkpoint or a weights file, read by name.
  virtual void load_weights(const std::string& path) = 0;
  /// Data-parallel training over c's ranks (collective; before training and load()).
  virtual void set_communicator(dicyc::dist::Communicator& c) = 0;
  /// Collective: whether every rank holds the same weights and optimiser state.
  virtual bool ranks_consistent() = 0;
  virtual std::int64_t iteration() const = 0;
  virtual std::int64_t epoch() const = 0;
  virtual bool done() const = 0;
  /// Device memory (bytes) that a fresh model of these options takes for one training step
  /// (train) or one A -> B translation of shape s: weights, optimiser state, pools, activations,
  /// caches and workspaces, as its context's allocator obtained them. Runs that step.
  virtual std::size_t probe_memory(bool train, const Shape& s) const = 0;
  /// Host bytes a checkpoint save takes (weights, both Adam moments, full image pools of images
  /// of shape s, gathered and then serialized by state(): twice): the save's peak on top of the
  /// training step's.
  virtual std::size_t checkpoint_bytes(const Shape& s) const = 0;
  /// Device memory this model's context holds now.
  virtual std::size_t footprint_bytes() const = 0;
  /// Samples whose alignment loss was undefined (constant images) since the model was made.
  virtual std::int64_t degenerate_samples() const = 0;
  virtual std::string device_name() const = 0;
};

#if defined(__GNUC__)
#define DICYC_TOOLS_EXPORT __attribute__((visibility("default")))
#else
#define DICYC_TOOLS_EXPORT
#endif

/// The GPU models (libdicyc_tools_gpu, built when DICYC_CUDA is on). `options_json` is
/// ModelOptions::to_json(); `device` the CUDA device index. They throw when no GPU is usable.
DICYC_TOOLS_EXPORT std::unique_ptr<HostModel<2, float>> make_gpu_model_2d_float(const std::string& options_json, int device);
DICYC_TOOLS_EXPORT std::unique_ptr<HostModel<3, float>> make_gpu_model_3d_float(const std::string& options_json, int device);
DICYC_TOOLS_EXPORT std::unique_ptr<HostModel<2, Eigen::half>> make_gpu_model_2d_half(const std::string& options_json, int device);
DICYC_TOOLS_EXPORT std::unique_ptr<HostModel<3, Eigen::half>> make_gpu_model_3d_half(const std::string& options_json, int device);

}  // namespace tools
