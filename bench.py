"""Speed of galaxy-vae's hot paths, each measured against its reference in the same run.

    python bench.py             # 2 min 19 s measured on 2 idle CPU cores (FID features and the embedded set dominate)
    python bench.py --quick     # about half that: fewer images, the embedded set timed on a part of it
    (the bench prints the time it took)

Prints one table and writes bench.json: for every row our figure, the reference's figure measured in
the same process a moment before or after, and the ratio (higher is better for us); rows held against
a fixed budget print the budget and no ratio. Every rate divides the images it timed by the best of
several timings after a warm-up. The machine, its estimated fp32 peak and a measured SGEMM rate come
first, so throughputs can be read against the hardware. Reported numbers (SSIM, FID) are always fp32:
the last column says how far ours are from the reference's values, which must stay within the
tolerances in the README.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import data
import fid
import losses
from cli import InputError, Parser, exit_on_input_error
from config import PRESETS, TrainConfig
from devices import cpu_flags, cpu_has_bf16, cpu_info, pick_device
from discriminator import build_adversary
from files import atomic_output
from graphed_step import GraphedTrainStep, adam
from model import ConvVAE, ModelConfig, build_model, decode_latents, standard_normal_latents

DEFAULT_RUN = TrainConfig()  # train.py's defaults: batch size, learning rate
BATCH_SIZE, LR = DEFAULT_RUN.batch_size, DEFAULT_RUN.lr


def best_seconds(fn, repeats, warmup=1):
    """Fastest of `repeats` timed calls after `warmup` untimed ones (the least disturbed run, as timeit)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def fp32_peak():
    """(GFLOP/s, how it was counted): cores x clock x fp32 FLOPs per cycle, two FMA units (2 FLOPs a lane)
    of 8 lanes with AVX2 and 16 with AVX-512, except on AMD before Zen 5 (cpu family < 26), whose
    AVX-512 runs on 256-bit units: 8 lanes, as AVX2."""
    info, flags = cpu_info(), cpu_flags()
    if not info.get("cpu MHz"):
        return None, "unknown CPU"
    half_width = "AMD" in info.get("vendor_id", "") and int(info.get("cpu family", 0)) < 26
    if "avx512f" in flags and not half_width:
        lanes, isa = 16, "AVX-512"
    elif "avx512f" in flags:
        lanes, isa = 8, "AVX-512 on 256-bit units"
    else:
        lanes, isa = (8, "AVX2") if "avx2" in flags else (4, "SSE")
    fma = 2 if "fma" in flags else 1
    ghz = float(info["cpu MHz"]) / 1000
    per_cycle = lanes * 2 * fma
    return os.cpu_count() * ghz * per_cycle, f"{os.cpu_count()} cores x {ghz:.2f} GHz x {per_cycle} FLOP/cycle, {isa} FMA"


def sgemm_gflops(n=2048):
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n ** 3 / best_seconds(lambda: a @ b, 3) / 1e9


# ---------------------------------------------------------------- 1. training step

def naive_train_step(model, x, optimizer, beta):
    """The same objective written plainly: pytorch-msssim's convolutional SSIM, eager fp32."""
    from pytorch_msssim import ssim as ms_ssim
    recon, mu, logvar = model(x)
    loss = x[0].numel() * (1 - ms_ssim(recon, x, data_range=1.0, size_average=True)) + beta * losses.kld(mu, logvar)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def bench_train_step(galaxies, batch_size, repeats):
    """Our step (losses.train_step on build_model's model, as train.train() runs it) in fp32 and, where
    the CPU has bfloat16, in bf16, against the naive step; one row per precision."""
    config = ModelConfig()
    x = galaxies.train_x[:batch_size].contiguous()
    if len(x) != batch_size:
        raise InputError(f"--batch-size {batch_size}: the bench set has {len(x)} training images")
    x_ours = x.contiguous(memory_format=torch.channels_last)

    def time_ours(precision):
        torch.manual_seed(0)
        model = build_model(config)
        optimizer = torch.optim.Adam(model.parameters(), lr=LR)
        return best_seconds(lambda: losses.train_step(model, x_ours, optimizer, 1.0, precision=precision),
                            repeats, warmup=2)
    torch.manual_seed(0)
    plain = ConvVAE(config.latent, config.base_channels, config.layers)
    plain_opt = torch.optim.Adam(plain.parameters(), lr=LR)
    with FlopCounterMode(display=False) as counter:
        naive_train_step(plain, x, plain_opt, 1.0)
    flops_per_image = counter.get_total_flops() / batch_size
    t_ours = time_ours("fp32")
    t_plain = best_seconds(lambda: naive_train_step(plain, x, plain_opt, 1.0), repeats, warmup=2)
    rows = [{"name": f"training step, batch {batch_size} (images/s)", "ours": batch_size / t_ours,
             "reference": batch_size / t_plain, "reference_name": "same model, eager, pytorch-msssim loss",
             "gflops_ours": flops_per_image * batch_size / t_ours / 1e9}]
    if cpu_has_bf16():
        t_bf16 = time_ours("bf16")
        rows.append({"name": f"training step bf16, batch {batch_size} (images/s)", "ours": batch_size / t_bf16,
                     "reference": batch_size / t_ours, "reference_name": "our fp32 step",
                     "note": f"{t_plain / t_bf16:.2f}x the naive step"})
    return rows


def bench_adversarial_step(galaxies, batch_size, repeats):
    """A --preset vaegan-cpu step (VAE with a noisy decoder, L1, adaptive adversarial term, then the
    16-channel discriminator's step) against the same step with the 32-channel discriminator: the width that
    lets the preset's 175,000 galaxies shown (40 epochs of the embedded set)
    fit the 15-minute CPU budget."""
    preset = TrainConfig.from_dict(PRESETS["vaegan-cpu"])
    x = galaxies.train_x[:batch_size].contiguous(memory_format=torch.channels_last)

    def step_seconds(disc_channels):
        torch.manual_seed(0)
        model = build_model(preset)
        optimizer = torch.optim.Adam(model.parameters(), lr=LR)
        adversary = build_adversary(preset.adversarial, preset.disc_augment, disc_channels, LR, lecam=preset.lecam)
        return best_seconds(lambda: losses.train_step(model, x, optimizer, preset.beta, l1_weight=preset.l1_weight,
                                                      adversary=adversary), repeats, warmup=2)
    return {"name": f"adversarial step (vaegan-cpu), batch {batch_size} (images/s)",
            "ours": batch_size / step_seconds(preset.disc_channels),
            "reference": batch_size / step_seconds(32), "reference_name": "the same with a 32-channel discriminator"}


# ---------------------------------------------------------------- 2. SSIM

def bench_ssim(galaxies, batch_size, repeats):
    from pytorch_msssim import ssim as ms_ssim
    x = galaxies.train_x[:batch_size].contiguous()
    y = (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)

    def forward_backward(fn):
        xg = x.clone().requires_grad_(True)
        fn(xg, y).backward()

    def reference(a, b):
        return ms_ssim(a, b, data_range=1.0, size_average=True, win_size=11, win_sigma=1.5)
    t_ours = best_seconds(lambda: forward_backward(losses.ssim), repeats, warmup=2)
    t_ref = best_seconds(lambda: forward_backward(reference), repeats, warmup=2)
    diff = (losses.ssim(x, y, per_image=True) - ms_ssim(x, y, data_range=1.0, size_average=False)).abs().max()
    return {"name": f"SSIM forward + backward, batch {batch_size} (images/s)", "ours": batch_size / t_ours,
            "reference": batch_size / t_ref, "reference_name": "pytorch-msssim ssim()",
            "max_difference": diff.item(), "difference_of": "per-image SSIM"}


# ---------------------------------------------------------------- 3. FID features

def bench_fid_features(galaxies, n_images, repeats):
    """Features of exactly n_images training galaxies (the test split of the bench set is smaller), ours
    and the bare TorchScript reference's, each warmed up once and timed at its best of `repeats`."""
    x = galaxies.train_x[:n_images].contiguous()
    if len(x) != n_images:
        raise InputError(f"FID features: the bench set has {len(x)} training images, not {n_images}")
    path = fid.check_weights(fid.default_weights_path())
    ours = fid.load_inception(device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.load is deprecated: the reference needs it all the same
        bare = torch.jit.load(str(path), map_location="cpu").eval()

    def reference():
        with torch.inference_mode():
            return torch.cat([bare(F.interpolate(b, size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1)
                              for b in x.split(32)])

    def ours_features():
        return fid.get_activations(x, ours, batch_size=32, device="cpu", progress=False)
    t_ours = best_seconds(ours_features, repeats)
    t_ref = best_seconds(reference, repeats)
    difference = np.abs(ours_features() - reference().numpy()).max()
    return {"name": f"FID features, {len(x)} images 64->299 (images/s)", "ours": len(x) / t_ours,
            "reference": n_images / t_ref, "reference_name": "bare TorchScript default_1.pt, batch 32",
            "max_difference": float(difference), "difference_of": "features"}


# ---------------------------------------------------------------- 4. Fréchet distance

def inception_like_statistics(seed, n=2048, dim=fid.FEATURE_DIM):
    """Statistics of n non-negative, correlated 2048-d 'features': rank n - 1, as real FID covariances."""
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(123).standard_normal((256, dim)) / 16
    acts = np.maximum((rng.standard_normal((n, 256)) + 0.2 * seed) @ mixing + 0.1 * rng.standard_normal((n, dim)), 0)
    return fid.calculate_statistics(acts)


def bench_frechet():
    from pytorch_fid.fid_score import calculate_frechet_distance
    (mu1, s1), (mu2, s2) = inception_like_statistics(1), inception_like_statistics(2)
    start = time.perf_counter()
    ours = fid.frechet_distance(mu1, s1, mu2, s2)
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pytorch-fid passes sqrtm's deprecated disp=False
        reference = calculate_frechet_distance(mu1, s1, mu2, s2)
    t_ref = time.perf_counter() - start
    return {"name": "Fréchet distance, 2048-d (seconds)", "ours": t_ours, "reference": t_ref,
            "reference_name": "pytorch-fid (scipy.linalg.sqrtm)", "lower_is_better": True,
            "max_difference": abs(ours - reference) / abs(reference), "difference_of": "relative FID"}


def bench_sampler_fit(n=4389, latent_dim=32, epochs=10):
    """The flow sampler's fit on the CPU (where generate.py --evaluate fits it, on a GPU machine too) to n
    latents of three classes, as many as the embedded set's training split: its batch rule against the fixed
    batch of 128 at lr 1e-3 it replaced. A twentieth of the usual 200 epochs; the fit's time is linear in them."""
    from samplers import FlowSampler
    z = standard_normal_latents(n, latent_dim, 0).numpy()
    labels = np.arange(n) % 3

    def fit(**recipe):
        start = time.perf_counter()
        FlowSampler(z, labels, 0, epochs, **recipe)
        return time.perf_counter() - start
    return {"name": f"flow sampler fit, {n} latents x {latent_dim}, {epochs} epochs (seconds)", "ours": fit(),
            "reference": fit(batch_size=128, lr=1e-3), "reference_name": "batch 128, lr 1e-3 (before)",
            "lower_is_better": True}


def bench_mixture_fit(n=4389, latent_dim=32):
    """The gmm sampler's fit (what generate.py --class waits for first) to the posteriors of n latents of three
    classes, as many as the embedded set's training split: at most MAX_FIT_POINTS draws a class, up to 16
    components, one BLAS thread, against 8 components on 8 draws of every latent with the machine's threads
    (before 2026-12-07, night)."""
    from sklearn.mixture import GaussianMixture
    from samplers import POSTERIOR_DRAWS, fit_sampler
    mu = standard_normal_latents(n, latent_dim, 0).numpy()
    sigma, labels = np.full_like(mu, 0.3), np.arange(n) % 3

    def before():
        eps = standard_normal_latents(POSTERIOR_DRAWS * n, latent_dim, 1).numpy()
        z = np.tile(mu, (POSTERIOR_DRAWS, 1)) + np.tile(sigma, (POSTERIOR_DRAWS, 1)) * eps
        y = np.tile(labels, POSTERIOR_DRAWS)
        for k in range(3):
            GaussianMixture(8, covariance_type="full", random_state=0).fit(z[y == k])
    ours = best_seconds(lambda: fit_sampler("gmm", mu, labels, confidence=0, spreads=sigma), repeats=1, warmup=0)
    return {"name": f"gmm sampler fit, {n} posteriors x {latent_dim} (seconds)", "ours": ours,
            "reference": best_seconds(before, repeats=1, warmup=0), "lower_is_better": True,
            "reference_name": "8 components on 8 draws a latent, all threads (before)"}


# ---------------------------------------------------------------- 5. the default run

def bench_morphometry(galaxies, n_images):
    """statmorph on every core (morphometry.measure_all), held against issue 41's budget: --evaluate with one
    sampler at N = 126 measures 252 drawn galaxies (126 reconstructions, 126 class samples) in <= 2 minutes
    once the real splits are cached. Timed on n_images embedded galaxies, scaled to 252."""
    import morphometry
    images = galaxies.train_x[:n_images]
    seconds = best_seconds(lambda: morphometry.measure_all(images, progress=False), repeats=1, warmup=0)
    per_second = n_images / seconds
    return {"name": "morphology of 252 drawn galaxies, all cores (s)", "ours": 252 / per_second, "budget": 120.0,
            "lower_is_better": True, "images_per_second": per_second,
            "reference_name": f"budget: 120 s (one sampler at N = 126); timed on {n_images} galaxies, "
                              f"{per_second:.2f} galaxies/s on {morphometry.cpu_workers()} workers"}


def bench_default_run(max_per_class):
    """First-run build of the embedded set (into a fresh cache) and one epoch of the default train.py run."""
    n = data.EMBEDDED_PER_CLASS if max_per_class is None else max_per_class
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        galaxies = data.load_galaxies("embedded", max_per_class=max_per_class, cache_dir=cache, progress=False)
        t_build = time.perf_counter() - start
    config = DEFAULT_RUN
    torch.manual_seed(0)
    model = build_model(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    start = time.perf_counter()
    losses.run_epoch(model, galaxies.train_x, config, 1.0, optimizer, torch.Generator().manual_seed(0))
    losses.run_epoch(model, galaxies.val_x, config, 1.0)
    t_epoch = time.perf_counter() - start
    scale = data.EMBEDDED_PER_CLASS / n  # a part of the set in --quick: extrapolated to the whole
    part = "" if scale == 1 else f" (extrapolated from {n} per class)"
    return [{"name": f"embedded set, first build (seconds){part}", "ours": t_build * scale, "budget": 120.0,
             "reference_name": "budget: 2 minutes", "lower_is_better": True},
            {"name": f"one epoch of the default run (seconds){part}", "ours": t_epoch * scale, "budget": 45.0,
             "reference_name": "budget: 20 epochs in 15 minutes", "lower_is_better": True}]


# ---------------------------------------------------------------- 7. on a GPU (--device cuda)

def epoch_images_per_second(galaxies, batch_size, device, graphed, repeats):
    """train.py's own training epoch (run_epoch; the galaxies on the GPU, as train.train() puts them; the step
    graphed or eager), images per second: the best of `repeats` epochs after one warm-up epoch."""
    config = TrainConfig(batch_size=batch_size)
    torch.manual_seed(0)
    model = build_model(config, device)
    optimizer = adam(model.parameters(), config.lr, capturable=graphed)
    step = GraphedTrainStep(model, optimizer, config) if graphed else None
    images = galaxies.train_x.to(device)

    def epoch():
        losses.run_epoch(model, images, config, 1.0, optimizer, torch.Generator().manual_seed(0), step=step)
    return len(images) / best_seconds(epoch, repeats)  # run_epoch reads its sums at the end: synchronised


def tight_loop_images_per_second(galaxies, batch_size, device, repeats):
    """The reference: the same step (losses.train_step, eager) over the same galaxies already on the GPU and cut
    into batches beforehand, with no host sync until the end."""
    config = TrainConfig(batch_size=batch_size)
    torch.manual_seed(0)
    model = build_model(config, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    batches = [b.contiguous(memory_format=torch.channels_last)
               for b in galaxies.train_x.to(device).split(batch_size) if len(b) == batch_size]

    def loop():
        for x in batches:
            losses.train_step(model, x, optimizer, 1.0)
        torch.cuda.synchronize(device)
    return len(batches) * batch_size / best_seconds(loop, repeats)


def bench_cuda_training(galaxies, device, repeats):
    ours = epoch_images_per_second(galaxies, BATCH_SIZE, device, True, repeats)
    eager = epoch_images_per_second(galaxies, BATCH_SIZE, device, False, repeats)
    tight = tight_loop_images_per_second(galaxies, BATCH_SIZE, device, repeats)
    wide = tight_loop_images_per_second(galaxies, 256, device, repeats)
    name = f"train.py's epoch, default model, batch {BATCH_SIZE}, {len(galaxies.train_x)} images (images/s)"
    return [{"name": name, "ours": ours, "reference": tight, "reference_name": "tight eager loop of the same step, "
             "no host syncs", "note": f"target 40,000; the same epoch eager {eager:,.0f}"},
            {"name": name, "ours": ours, "reference": wide, "reference_name": "the tight loop at batch 256"}]


def bench_cuda_fid_features(galaxies, device, repeats, batch_size=200):
    """fid.get_activations against the bare TorchScript network, both at `batch_size` on the GPU."""
    x = galaxies.train_x[:2000].contiguous()
    path = fid.check_weights(fid.default_weights_path())
    ours = fid.load_inception(device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bare = torch.jit.load(str(path), map_location=device).eval()
    on_device = x.to(device)

    def reference():
        with torch.inference_mode():
            out = torch.cat([bare(F.interpolate(b, size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1)
                             for b in on_device.split(batch_size)]).cpu()
        return out

    def ours_features():
        return fid.get_activations(x, ours, batch_size=batch_size, device=device, progress=False)
    t_ours, t_ref = best_seconds(ours_features, repeats), best_seconds(reference, repeats)
    difference = np.abs(ours_features() - reference().numpy()).max()
    return {"name": f"FID features, {len(x)} images 64->299, batch {batch_size} (images/s)", "ours": len(x) / t_ours,
            "reference": len(x) / t_ref, "reference_name": "bare TorchScript default_1.pt, images already on the GPU",
            "note": "target 90%", "max_difference": float(difference), "difference_of": "features"}


def bench_cuda_default_run():
    """`python train.py` end to end, in a fresh process, once the embedded set's cache exists."""
    data.load_galaxies("embedded", progress=False)  # build the cache first: the target excludes it
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run([sys.executable, str(Path(__file__).with_name("train.py")), "--out", out], check=True,
                       stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
    return {"name": "the default run, python train.py, end to end (seconds)", "ours": seconds, "budget": 15.0,
            "reference_name": "budget: 15 s once the data cache exists", "lower_is_better": True}


def cuda_rows(device, repeats):
    galaxies = data.load_galaxies("embedded", progress=False)
    rows = bench_cuda_training(galaxies, device, repeats)
    try:
        rows.append(bench_cuda_fid_features(galaxies, device, repeats))
    except InputError as e:
        print(f"FID features: not measured ({e})")
    return rows + [bench_sampler_fit(), bench_cuda_default_run()]


# ---------------------------------------------------------------- 6. the explorer under load

def concurrent_decodes(url, latents, clients=8):
    """POST every latent to the explorer's /api/decode from `clients` threads at once, each on its own
    keep-alive connection: (HTTP statuses, seconds per request, decoded images as H x W x 3 uint8), in
    the order of `latents`."""
    import base64
    import http.client
    from concurrent.futures import ThreadPoolExecutor
    from io import BytesIO
    from urllib.parse import urlsplit
    from PIL import Image
    n, address = len(latents), urlsplit(url)
    statuses, seconds, images = [None] * n, [None] * n, [None] * n

    def client(share):
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
        for i in share:
            body = json.dumps({"latent": latents[i].tolist()})
            start = time.perf_counter()
            connection.request("POST", "/api/decode", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            answer = response.read()
            seconds[i], statuses[i] = time.perf_counter() - start, response.status
            if response.status == 200:
                png = base64.b64decode(json.loads(answer)["image"].split(",", 1)[1])
                images[i] = np.asarray(Image.open(BytesIO(png)).convert("RGB"))
        connection.close()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, [range(c, n, clients) for c in range(clients)]))
    return statuses, seconds, images


def bench_explorer(requests=400, clients=8, max_per_class=100):
    """p50 and p95 latency of /api/decode with the default model, `clients` at once, against a real
    `python explore.py` process as a user starts it; every answer is checked against decoding the same
    latent here. The model has random weights: they decode as fast as trained ones."""
    import re
    import subprocess
    import sys
    torch.manual_seed(0)
    model = build_model(ModelConfig()).eval()
    with tempfile.TemporaryDirectory() as tmp:
        config = {**vars(ModelConfig()), "data": "embedded", "max_per_class": max_per_class, "seed": 0}
        torch.save({"model": model.state_dict(), "config": config}, Path(tmp) / "best.pt")
        server = subprocess.Popen([sys.executable, str(Path(__file__).with_name("explore.py")), "--checkpoint",
                                   str(Path(tmp) / "best.pt"), "--port", "0", "--device", "cpu",
                                   "--refine-steps", "0"],  # the decodes' latency, not the sampler's choice
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            url = re.search(r"http://\S+", server.stdout.readline())[0]
            latents = standard_normal_latents(requests, model.latent_dim, seed=1)
            statuses, seconds, images = concurrent_decodes(url, latents, clients)
        finally:
            server.terminate()
            server.wait()
    # One at a time, as the server decodes them: other batch sizes may round a pixel differently.
    expected = [decode_latents(model, z[None])[0].mul(255).add(0.5).to(torch.uint8).permute(1, 2, 0) for z in latents]
    wrong = sum(s != 200 or img is None or not np.array_equal(img, e.numpy()) for s, img, e in zip(statuses, images, expected))
    p50, p95 = np.percentile(np.array(seconds) * 1000, [50, 95])
    return {"name": f"explorer decode, {clients} clients x {requests} requests, p95 (ms)", "ours": p95,
            "budget": 100.0, "lower_is_better": True,
            "reference_name": f"budget: 100 ms; p50 {p50:.1f} ms; {wrong} of {requests} answers wrong",
            "p50_ms": p50, "p95_ms": p95, "wrong_answers": wrong}


def cpu_rows(args, repeats):
    galaxies = data.load_galaxies("embedded", max_per_class=100, progress=False)
    return [*bench_train_step(galaxies, args.batch_size, repeats),
            bench_adversarial_step(galaxies, args.batch_size, repeats), bench_ssim(galaxies, args.batch_size, repeats),
            bench_fid_features(galaxies, 32 if args.quick else 64, 2 if args.quick else 3), bench_frechet(),
            bench_sampler_fit(), bench_mixture_fit(), bench_morphometry(galaxies, 32 if args.quick else 64),
            *bench_default_run(100 if args.quick else None), bench_explorer()]


def print_table(machine, rows):
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, bf16 {'yes' if machine['bf16'] else 'no'}, "
          f"torch {machine['torch']} ({machine['threads']} threads), device {machine.get('gpu', 'cpu')}")
    print(f"fp32 peak (estimate) {machine['peak_gflops']:.0f} GFLOP/s = {machine['peak_basis']}; SGEMM 2048 "
          f"measured {machine['sgemm_gflops']:.0f} GFLOP/s")
    width = max(len(row["name"]) for row in rows) + 2
    print(f"{'':{width}}{'ours':>10}{'reference':>11}{'ratio':>8}  reference, and |ours - reference|")
    for row in rows:
        note = row["reference_name"]
        if "max_difference" in row:
            note += f"; max diff of {row['difference_of']} {row['max_difference']:.2g}"
        if "gflops_ours" in row:
            note += f"; ours {row['gflops_ours']:.1f} GFLOP/s = {row['gflops_ours'] / machine['peak_gflops']:.0%} of peak"
        if "note" in row:
            note += f"; {row['note']}"
        if "budget" in row:
            print(f"{row['name']:{width}}{row['ours']:10.3g}{row['budget']:11.3g}{'budget':>8}  {note}")
        else:
            print(f"{row['name']:{width}}{row['ours']:10.3g}{row['reference']:11.3g}{row['ratio']:7.2f}x  {note}")


@exit_on_input_error
def main(argv=None):
    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer images and repeats (about half the time)")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="1 to 240 (the bench set's training images)")
    parser.add_argument("--device", default="cpu", help="cpu (every row), or cuda: train.py's epoch against a tight "
                        "loop and the batch-256 rate, FID features against the bare network, the default run")
    parser.add_argument("--out", default="bench.json", help="where to write the results as JSON")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        raise InputError(f"--batch-size {args.batch_size}: must be at least 1")
    repeats = 3 if args.quick else 10
    started = time.perf_counter()
    peak, basis = fp32_peak()
    machine = {"cpu": cpu_info().get("model name", "unknown CPU"), "cores": os.cpu_count(),
               "threads": torch.get_num_threads(), "torch": torch.__version__, "bf16": cpu_has_bf16(),
               "peak_gflops": peak or float("nan"), "peak_basis": basis, "sgemm_gflops": sgemm_gflops()}
    device = pick_device(args.device)
    if device.type == "cuda":
        machine["gpu"] = torch.cuda.get_device_name(device)
        rows = cuda_rows(device, repeats)
    else:
        rows = cpu_rows(args, repeats)
    for row in rows:
        if "reference" in row:
            row["ratio"] = row["reference"] / row["ours"] if row.get("lower_is_better") else row["ours"] / row["reference"]
    print_table(machine, rows)
    with atomic_output(args.out) as tmp:
        tmp.write_text(json.dumps({"machine": machine, "quick": args.quick, "rows": rows,
                                   "seconds": time.perf_counter() - started}, indent=1))
    print(f"wrote {args.out}; the bench took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
