// dicyc/model/losses.hpp -- the loss record of one training iteration, and the one table of its
// fields that everything else walks: the CSV log's columns, the average over ranks, the
// non-finite check's report and the tools' device wrapper all read kLossFields instead of naming
// the members again. Plain C++ (no Eigen), so that nvcc and g++ translation units share it.
//
// A member added to StepLosses and not to the table (or the other way round) fails to compile:
// the static_asserts below check that the table names every member exactly once.
#pragma once

#include <cstddef>
#include <iterator>

namespace dicyc::model {

/// The losses of one iteration: the unweighted terms, and g_total, the weighted sum minimised.
struct StepLosses {
  double gan_ab = 0, gan_ba = 0;      // generator LSGAN terms: D_B on G_AB's output, D_A on G_BA's
  double cyc_a = 0, cyc_b = 0;        // |G_BA(G_AB(x)) - x|, |G_AB(G_BA(y)) - y| (plain paths)
  double dicyc_a = 0, dicyc_b = 0;    // deformed cycles (DiCyc; 0 otherwise)
  double id_a = 0, id_b = 0;          // |G_BA(x) - x|, |G_AB(y) - y| (0 when lambda_id is 0)
  double align_a = 0, align_b = 0;    // L(x, G_AB(x)), L(y, G_BA(y)) (0 without alignment)
  double gan_plain_ab = 0, gan_plain_ba = 0;  // LSGAN terms on DiCyc's undeformed outputs warped into
                                              // the other pose (0 unless ModelOptions::lambda_gan_plain
                                              // > 0; not in the paper)
  double g_total = 0;
  double d_a = 0, d_b = 0;            // discriminator losses
  double lr = 0;                      // learning rate used
};
using CycleGanLosses = StepLosses;

/// What a field is: a term of the generator's objective (checked for finiteness and averaged over
/// the ranks with the others), the objective's total, a discriminator loss (averaged in the D
/// step), or the learning rate (the same on every rank).
enum class LossKind { GeneratorTerm, GeneratorTotal, Discriminator, LearningRate };

struct LossField {
  const char* name;
  double StepLosses::*member;
  LossKind kind;
};

/// In the order of losses.csv's columns.
inline constexpr LossField kLossFields[] = {
    {"lr", &StepLosses::lr, LossKind::LearningRate},
    {"g_total", &StepLosses::g_total, LossKind::GeneratorTotal},
    {"gan_ab", &StepLosses::gan_ab, LossKind::GeneratorTerm},
    {"gan_ba", &StepLosses::gan_ba, LossKind::GeneratorTerm},
    {"cyc_a", &StepLosses::cyc_a, LossKind::GeneratorTerm},
    {"cyc_b", &StepLosses::cyc_b, LossKind::GeneratorTerm},
    {"dicyc_a", &StepLosses::dicyc_a, LossKind::GeneratorTerm},
    {"dicyc_b", &StepLosses::dicyc_b, LossKind::GeneratorTerm},
    {"id_a", &StepLosses::id_a, LossKind::GeneratorTerm},
    {"id_b", &StepLosses::id_b, LossKind::GeneratorTerm},
    {"align_a", &StepLosses::align_a, LossKind::GeneratorTerm},
    {"align_b", &StepLosses::align_b, LossKind::GeneratorTerm},
    {"gan_plain_ab", &StepLosses::gan_plain_ab, LossKind::GeneratorTerm},
    {"gan_plain_ba", &StepLosses::gan_plain_ba, LossKind::GeneratorTerm},
    {"d_a", &StepLosses::d_a, LossKind::Discriminator},
    {"d_b", &StepLosses::d_b, LossKind::Discriminator},
};
inline constexpr std::size_t kLossFieldCount = std::size(kLossFields);

namespace detail {
constexpr bool loss_fields_distinct() {
  for (std::size_t i = 0; i < kLossFieldCount; ++i)
    for (std::size_t j = i + 1; j < kLossFieldCount; ++j)
      if (kLossFields[i].member == kLossFields[j].member) return false;
  return true;
}
}  // namespace detail

// Every member is a double and the table names distinct members: equal counts make it a bijection.
static_assert(sizeof(StepLosses) == kLossFieldCount * sizeof(double),
              "StepLosses and kLossFields disagree: add the new member to the table (or remove it from both)");
static_assert(detail::loss_fields_distinct(), "kLossFields names a StepLosses member twice");

}  // namespace dicyc::model
