// Embedding dicyc: a user's own training loop on data of their own, through the installed package
// (find_package(dicyc)). Two sets of unpaired images held in memory become sampled domains; the
// library's Trainer runs a model on them with checkpoints, a loss log and exact resume -- the loop
// dicyc-train runs. Then the trained generator translates one whole image.
#include <cmath>
#include <cstdio>
#include <filesystem>

#include <dicyc/model.hpp>
#include <dicyc/train.hpp>

int main() {
  using namespace dicyc;
  using Dev = Eigen::ThreadPoolDevice;
  core::Context<Dev> ctx(2);

  // Your data: here two sets of 40x40 images in [-1, 1] (domain A: discs, domain B: rings).
  std::vector<std::vector<float>> a, b;
  for (int k = 0; k < 6; ++k) {
    std::vector<float> da(40 * 40, -1.0f), db(40 * 40, -1.0f);
    for (int y = 0; y < 40; ++y)
      for (int x = 0; x < 40; ++x) {
        const double r = std::hypot(x - 20.0 - k, y - 20.0 + k);
        if (r < 12) da[x + 40 * y] = 0.8f;
        if (r > 8 && r < 14) db[x + 40 * y] = 0.6f;
      }
    a.push_back(da);
    b.push_back(db);
  }
  auto dom_a = std::make_shared<data::Domain>(data::Domain::from_slices("discs", a, 40, 40));
  auto dom_b = std::make_shared<data::Domain>(data::Domain::from_slices("rings", b, 40, 40));

  // The loop: any of the seven models, dicyc-train's sampler, checkpoints and an exact resume.
  data::SamplerOptions so;
  so.crop = {32, 32, 1};
  const auto opts = model::ModelOptions::preset("nmi-dicyc").generator(nn::GeneratorOptions().ngf(4).n_blocks(1)).ndf(8);
  const std::string out = (std::filesystem::temp_directory_path() / "dicyc_embed_run").string();
  std::filesystem::remove_all(out);
  for (std::int64_t until : {10, 20}) {  // a run, then its resume (a new model, as a new process would)
    auto m = model::make_model<2, float, Dev>(ctx, opts);
    train::ModelTrainable<2, float, Dev> trainable(ctx, *m);
    train::SamplerSource source(dom_a, dom_b, so);
    train::Trainer trainer(trainable, source,
                           train::TrainerOptions().out(out).max_iterations(until).checkpoint_every(5).resume(until > 10));
    trainer.hooks().log = [](const model::StepLosses& L, const train::Progress& p) {
      std::printf("  it %lld: G %.3f (cycle %.3f/%.3f, NMI alignment %.3f/%.3f)\n", static_cast<long long>(p.iteration),
                  L.g_total, L.cyc_a, L.cyc_b, L.align_a, L.align_b);
    };
    const train::TrainResult r = trainer.fit();
    if (r.outcome != train::Outcome::Done) {
      std::fprintf(stderr, "embed: training stopped: %s\n", r.message.c_str());
      return 1;
    }
    std::printf("embed: trained iterations %lld -> %lld, checkpoint %s/checkpoint.safetensors\n",
                static_cast<long long>(r.start_iteration), static_cast<long long>(r.iteration), out.c_str());
    if (until == 20) {  // synthesis with the plain generator, on a whole image (any size divisible by 4)
      std::vector<float> y(a[0].size());
      ConstTensorMap<float, 4> xm(a[0].data(), 1, 40, 40, 1);
      TensorMap<float, 4> ym(y.data(), 1, 40, 40, 1);
      m->translate_ab(xm, ym);
      std::printf("embed: translated a 40x40 image A -> B, centre value %.3f\n", y[20 + 40 * 20]);
    }
  }
  std::filesystem::remove_all(out);
  return 0;
}
