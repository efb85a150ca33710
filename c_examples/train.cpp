// The C API from C++: the header's extern "C" block, std::vector buffers,
// one pcgrad_merge_flat call per step.
//
// Three tasks share a parameter vector w of N coordinates; task t wants w
// near its own target c_t (loss_t = |w - c_t|^2 / 2, gradient w - c_t). The
// targets disagree on most coordinates, so the gradients conflict. Gradient
// descent on the PCGrad-merged gradient (simultaneous mode, mean reduction)
// must reduce the summed loss and stay finite; the program checks the
// status of every call and exits 1 on any failure.
#include <pcgrad.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

void check(pcgrad_status s, const char *what) {
    if (s != PCGRAD_OK) throw std::runtime_error(std::string(what) + ": " + pcgrad_status_str(s));
}

constexpr std::size_t kTasks = 3;
constexpr std::size_t kDim = 1000;

double total_loss(const std::vector<float> &w, const std::vector<float> &targets) {
    double l = 0.0;
    for (std::size_t t = 0; t < kTasks; t++)
        for (std::size_t n = 0; n < kDim; n++) {
            double e = double(w[n]) - targets[t * kDim + n];
            l += 0.5 * e * e;
        }
    return l;
}

int run() {
    std::printf("pcgrad %s from C++ (header %s)\n", pcgrad_version(), PCGRAD_VERSION_STRING);

    // Targets from a small LCG: deterministic, partly opposite across tasks.
    std::vector<float> targets(kTasks * kDim);
    std::uint32_t lcg = 12345u;
    for (std::size_t n = 0; n < kDim; n++) {
        lcg = lcg * 1664525u + 1013904223u;
        float base = float(lcg >> 8) / float(1u << 24) * 2.0f - 1.0f;
        targets[0 * kDim + n] = base;
        targets[1 * kDim + n] = -base + 0.5f;
        targets[2 * kDim + n] = (n % 2 == 0) ? base : -base;
    }

    std::size_t ws_len = 0;
    check(pcgrad_workspace_len(kTasks, &ws_len), "pcgrad_workspace_len");
    std::vector<double> workspace(ws_len);
    std::vector<float> w(kDim, 2.0f), grads(kTasks * kDim), merged(kDim);
    std::vector<double> gram(kTasks * kTasks);

    pcgrad_config config{};  // value-initialised: the documented defaults
    config.mode = PCGRAD_MODE_SIMULTANEOUS;
    config.check_finite = 1;

    const double initial = total_loss(w, targets);
    const float lr = 0.2f;
    std::size_t conflicts = 0;
    for (int step = 0; step < 50; step++) {
        for (std::size_t t = 0; t < kTasks; t++)
            for (std::size_t n = 0; n < kDim; n++) grads[t * kDim + n] = w[n] - targets[t * kDim + n];
        pcgrad_stats stats{};
        check(pcgrad_merge_flat(&config, grads.data(), grads.size(), nullptr, 0, nullptr, 0, kTasks, kDim,
                                merged.data(), merged.size(), &stats, gram.data(), gram.size(),
                                workspace.data(), workspace.size()),
              "pcgrad_merge_flat");
        conflicts += stats.conflicting_pairs;
        for (std::size_t n = 0; n < kDim; n++) w[n] -= lr * merged[n];
        if (step % 10 == 0 || step == 49)
            std::printf("step %2d: summed loss %10.4f, %zu conflicting pair(s), %zu projection(s)\n", step,
                        total_loss(w, targets), stats.conflicting_pairs, stats.projections);
    }
    const double final_loss = total_loss(w, targets);

    // A refused call must report its status and leave the output alone.
    std::vector<float> before = merged;
    pcgrad_status s = pcgrad_merge_flat(&config, grads.data(), grads.size() - 1, nullptr, 0, nullptr, 0,
                                        kTasks, kDim, merged.data(), merged.size(), nullptr, nullptr, 0,
                                        workspace.data(), workspace.size());
    if (s != PCGRAD_ERROR_LENGTH_MISMATCH || merged != before) {
        std::fprintf(stderr, "a short gradient buffer gave %d (%s)\n", int(s), pcgrad_status_str(s));
        return 1;
    }

    if (!std::isfinite(final_loss) || !(final_loss < initial) || conflicts == 0) {
        std::fprintf(stderr, "train_cpp: FAILED (loss %g -> %g, %zu conflicts)\n", initial, final_loss, conflicts);
        return 1;
    }
    std::printf("train_cpp: summed loss %.4f -> %.4f in 50 steps\n", initial, final_loss);
    return 0;
}

}  // namespace

int main() {
    try {
        return run();
    } catch (const std::exception &e) {
        std::fprintf(stderr, "train_cpp: %s\n", e.what());
        return 1;
    }
}
