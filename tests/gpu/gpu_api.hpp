// Plain-C++ interface to the GPU instantiations in gpu_ops_*.cu, for the g++-compiled GPU parity
// test. Only standard types cross it, so the nvcc and g++ translation units share no Eigen inline
// code compiled under different macros.
#pragma once

#include <string>
#include <vector>

namespace gpu_api {

/// Number of CUDA devices (0 without a GPU or driver).
int device_count();

/// NCCL with one GPU, one rank (gpu_nccl.cu, built where the toolkit has NCCL): "" when the
/// communicator starts and reduces device memory correctly, else what went wrong.
std::string nccl_one_rank();

struct ConvDesc {
  int dim = 2;
  bool transpose = false;
  long in_ch = 1, out_ch = 1;
  long kernel[3] = {1, 1, 1}, stride[3] = {1, 1, 1}, pad[3] = {0, 0, 0}, out_pad[3] = {0, 0, 0};
  long in_shape[5] = {1, 1, 1, 1, 1};  // (C, spatial..., N); the first dim + 2 entries are used
};

struct ConvResult {
  std::vector<double> y, dx, dw, db;
};

/// Forward and backward of one conv (or transposed conv) on the GPU, in float or half.
ConvResult conv_float(const ConvDesc& d, const std::vector<double>& x, const std::vector<double>& w,
                      const std::vector<double>& b, const std::vector<double>& dy);
ConvResult conv_half(const ConvDesc& d, const std::vector<double>& x, const std::vector<double>& w,
                     const std::vector<double>& b, const std::vector<double>& dy);

struct MiscResult {
  std::vector<double> pad_y, pad_dx, in_y, in_dx, relu_dx, lrelu_y, tanh_y, tanh_dx;
  double sum_abs = 0, sum_sq = 0, mean = 0;
};

/// Reflection pad (by 1), instance norm, activations and reductions on the GPU. The shape is
/// (C, spatial..., N) with dim + 2 entries used.
MiscResult misc_float(int dim, const long* shape, const std::vector<double>& x, const std::vector<double>& g);
MiscResult misc_half(int dim, const long* shape, const std::vector<double>& x, const std::vector<double>& g);

struct LossResult {
  double values[6] = {0, 0, 0, 0, 0, 0};  // l1, lsgan(a, 1), lsgan_discriminator(a, b), nmi, gcc, mind
  std::vector<double> ga, gb;              // gradients of sum_k (k + 1) * values[k]
};

/// Every loss on the GPU for inputs of shape (C, spatial..., N), with an optional mask (empty: none).
LossResult losses_float(int dim, const long* shape, const std::vector<double>& a, const std::vector<double>& b,
                        const std::vector<double>& mask);
LossResult losses_half(int dim, const long* shape, const std::vector<double>& a, const std::vector<double>& b,
                       const std::vector<double>& mask);

struct SampleResult {
  std::vector<double> y, dx, dgrid;  // grid sampler output and gradients
  std::vector<double> tps_grid, tps_ddisp;  // TPS grid of disp, and the backward of dgrid_in
};

/// Grid sampler (border if border, else zeros) forward and backward, and a TPS grid (control
/// grid `control` per axis, output = the grid's spatial extents) forward and backward, on the GPU.
SampleResult sample_float(int dim, const long* x_shape, const long* grid_shape, bool border, long control,
                          const std::vector<double>& x, const std::vector<double>& grid, const std::vector<double>& dy,
                          const std::vector<double>& disp);
SampleResult sample_half(int dim, const long* x_shape, const long* grid_shape, bool border, long control,
                         const std::vector<double>& x, const std::vector<double>& grid, const std::vector<double>& dy,
                         const std::vector<double>& disp);

struct ModuleResult {
  std::vector<double> off_y, off_dx, off_grads, stn_y, stn_dsrc, stn_dtgt, stn_grads;
};

/// 2-D OffsetBranch(C, hidden 6) and Stn(C, control 4, hidden 8 and 6) on x (C, X, Y, N), with the
/// given flat parameter values (declaration order), forward and backward with upstream gradient g.
ModuleResult modules_float(const long* shape, const std::vector<double>& x, const std::vector<double>& t,
                           const std::vector<double>& g, const std::vector<double>& off_params,
                           const std::vector<double>& stn_params);

}  // namespace gpu_api

namespace gpu_api {

struct ModelRunResult {
  std::vector<double> g_total, d_total;  // per iteration
  std::vector<double> g_ab;              // G_AB's parameters after the run
};

/// `iters` iterations of a small 2-D model on the GPU: the preset `name` (cyclegan, nmi-dicyc, ...)
/// with ngf 4, 1 block, ndf 4, 1 D layer, 3x3 control grid, seed 1, on x, y of shape (1, 16, 16, 1).
ModelRunResult model_float(const char* name, int iters, const std::vector<double>& x, const std::vector<double>& y);

}  // namespace gpu_api
