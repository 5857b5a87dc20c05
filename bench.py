"""Speed of galaxy-vae's hot paths, each measured against its reference in the same run.

    python bench.py             # ~5 minutes on 2 CPU cores (FID features and the embedded set dominate)
    python bench.py --quick     # ~1 minute: fewer images, the embedded set timed on a part of it

Prints one table and writes bench.json: for every row our figure, the reference's figure measured in
the same process a moment before or after, and the ratio (higher is better for us). The machine, its
estimated fp32 peak and a measured SGEMM rate come first, so throughputs can be read against the
hardware. Reported numbers (SSIM, FID) are always fp32: the last column says how far ours are from the
reference's values, which must stay within the tolerances in the README.
"""
import argparse
import json
import os
import platform
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
import train
from model import ConvVAE


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


def fp32_peak_gflops():
    """Cores x clock x fp32 FLOPs per cycle (two FMA units of 8 lanes with AVX2, 16 with AVX-512)."""
    flags = mhz = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags") and not flags:
                flags = line
            if line.startswith("cpu MHz") and not mhz:
                mhz = line.split(":")[1]
    except OSError:
        return None
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    fma = 2 if " fma" in flags else 1
    return os.cpu_count() * float(mhz or 0) / 1000 * lanes * 2 * fma


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
    config = train.TrainConfig(batch_size=batch_size)
    x = galaxies.train_x[:batch_size].contiguous()
    torch.manual_seed(0)
    ours = train.build_model(config)  # as train.train() builds it
    ours_opt = torch.optim.Adam(ours.parameters(), lr=config.lr)
    torch.manual_seed(0)
    plain = ConvVAE(config.latent, config.base_channels, config.layers)
    plain_opt = torch.optim.Adam(plain.parameters(), lr=config.lr)
    with FlopCounterMode(display=False) as counter:
        naive_train_step(plain, x, plain_opt, 1.0)
    flops_per_image = counter.get_total_flops() / batch_size
    t_ours = best_seconds(lambda: train.train_step(ours, x.contiguous(memory_format=torch.channels_last),
                                                   ours_opt, 1.0), repeats, warmup=2)
    t_plain = best_seconds(lambda: naive_train_step(plain, x, plain_opt, 1.0), repeats, warmup=2)
    return {"name": f"training step, batch {batch_size} (images/s)", "ours": batch_size / t_ours,
            "reference": batch_size / t_plain, "reference_name": "same model, eager, pytorch-msssim loss",
            "gflops_ours": flops_per_image * batch_size / t_ours / 1e9}


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

def bench_fid_features(galaxies, n_images):
    x = galaxies.test_x[:n_images].contiguous()
    path = fid.check_weights(fid.default_weights_path())
    ours = fid.load_inception(device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.load is deprecated: the reference needs it all the same
        bare = torch.jit.load(str(path), map_location="cpu").eval()

    def reference():
        with torch.inference_mode():
            return torch.cat([bare(F.interpolate(b, size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1)
                              for b in x.split(32)])
    start = time.perf_counter()
    ours_features = fid.get_activations(x, ours, batch_size=32, device="cpu", progress=False)
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    ref_features = reference().numpy()
    t_ref = time.perf_counter() - start
    return {"name": f"FID features, {n_images} images 64->299 (images/s)", "ours": n_images / t_ours,
            "reference": n_images / t_ref, "reference_name": "bare TorchScript default_1.pt, batch 32",
            "max_difference": float(np.abs(ours_features - ref_features).max()), "difference_of": "features"}


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


# ---------------------------------------------------------------- 5. the default run

def bench_default_run(max_per_class):
    """First-run build of the embedded set (into a fresh cache) and one epoch of the default train.py run."""
    n = data.EMBEDDED_PER_CLASS if max_per_class is None else max_per_class
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        galaxies = data.load_galaxies("embedded", max_per_class=max_per_class, cache_dir=cache, progress=False)
        t_build = time.perf_counter() - start
    config = train.TrainConfig()
    torch.manual_seed(0)
    model = train.build_model(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    start = time.perf_counter()
    train.run_epoch(model, galaxies.train_x, config, 1.0, optimizer, torch.Generator().manual_seed(0))
    train.run_epoch(model, galaxies.val_x, config, 1.0)
    t_epoch = time.perf_counter() - start
    scale = data.EMBEDDED_PER_CLASS / n  # a part of the set in --quick: extrapolated to the whole
    part = "" if scale == 1 else f" (extrapolated from {n} per class)"
    return [{"name": f"embedded set, first build (seconds){part}", "ours": t_build * scale, "reference": 120.0,
             "reference_name": "budget: 2 minutes", "lower_is_better": True},
            {"name": f"one epoch of the default run (seconds){part}", "ours": t_epoch * scale, "reference": 45.0,
             "reference_name": "budget: 20 epochs in 15 minutes", "lower_is_better": True}]


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


def bench_explorer(galaxies, requests=400, clients=8):
    """p50 and p95 latency of /api/decode with the default model, `clients` at once; every answer is
    checked against decoding the same latent directly. Clients and server share this process (and its
    GIL), so the figures are an upper bound on what a browser sees."""
    import threading
    import explore
    from model import ModelConfig, build_model, decode_latents, standard_normal_latents
    torch.manual_seed(0)
    model = build_model(ModelConfig()).eval()  # random weights decode as fast as trained ones
    server = explore.make_server(explore.Explorer(model, galaxies), port=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as explore.py serves
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        latents = standard_normal_latents(requests, model.latent_dim, seed=1)
        statuses, seconds, images = concurrent_decodes(explore.server_url(server), latents, clients)
        # One at a time, as the server decodes them: other batch sizes may round a pixel differently.
        expected = [decode_latents(model, z[None])[0].mul(255).add(0.5).to(torch.uint8).permute(1, 2, 0) for z in latents]
    finally:
        server.shutdown()
        server.server_close()
        torch.set_num_threads(threads)
    wrong = sum(s != 200 or img is None or not np.array_equal(img, e.numpy()) for s, img, e in zip(statuses, images, expected))
    p50, p95 = np.percentile(np.array(seconds) * 1000, [50, 95])
    return {"name": f"explorer decode, {clients} clients x {requests} requests, p95 (ms)", "ours": p95,
            "reference": 100.0, "lower_is_better": True,
            "reference_name": f"budget: 100 ms; p50 {p50:.1f} ms; {wrong} of {requests} answers wrong",
            "p50_ms": p50, "p95_ms": p95, "wrong_answers": wrong}


def print_table(machine, rows):
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']} "
          f"({machine['threads']} threads), device cpu")
    print(f"fp32 peak (estimate) {machine['peak_gflops']:.0f} GFLOP/s; SGEMM 2048 measured "
          f"{machine['sgemm_gflops']:.0f} GFLOP/s")
    width = max(len(row["name"]) for row in rows) + 2
    print(f"{'':{width}}{'ours':>10}{'reference':>11}{'ratio':>8}  reference, and |ours - reference|")
    for row in rows:
        note = row["reference_name"]
        if "max_difference" in row:
            note += f"; max diff of {row['difference_of']} {row['max_difference']:.2g}"
        if "gflops_ours" in row:
            note += f"; ours {row['gflops_ours']:.1f} GFLOP/s = {row['gflops_ours'] / machine['peak_gflops']:.0%} of peak"
        print(f"{row['name']:{width}}{row['ours']:10.3g}{row['reference']:11.3g}{row['ratio']:7.2f}x  {note}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer images and repeats (~1 minute)")
    parser.add_argument("--batch-size", type=int, default=train.TrainConfig.batch_size)
    parser.add_argument("--out", default="bench.json", help="where to write the results as JSON")
    args = parser.parse_args()
    repeats = 3 if args.quick else 10
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "threads": torch.get_num_threads(), "torch": torch.__version__,
               "peak_gflops": fp32_peak_gflops(), "sgemm_gflops": sgemm_gflops()}
    galaxies = data.load_galaxies("embedded", max_per_class=100, progress=False)
    rows = [bench_train_step(galaxies, args.batch_size, repeats), bench_ssim(galaxies, args.batch_size, repeats),
            bench_fid_features(galaxies, 32 if args.quick else 64), bench_frechet(),
            *bench_default_run(100 if args.quick else None), bench_explorer(galaxies)]
    for row in rows:
        ratio = row["reference"] / row["ours"] if row.get("lower_is_better") else row["ours"] / row["reference"]
        row["ratio"] = ratio
    print_table(machine, rows)
    with data.atomic_output(args.out) as tmp:
        tmp.write_text(json.dumps({"machine": machine, "quick": args.quick, "rows": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
