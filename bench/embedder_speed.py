"""Embedder throughput and latency: fp32 vs int8 dynamic quantization (CPU), or GPU vs CPU.

Encodes ~2000 short sentences (generated, or the text column of a CSV/JSON/JSONL file) with the
default embedder in two variants, in alternating rounds so a busy machine slows both alike, and
measures sentences/s, the p50 latency of a single-sentence encode and how close the second
variant's vectors stay to the first's (mean cosine). On the CPU the variants are fp32 and int8;
with `--device cuda` they are fp32 on the GPU and fp32 on the CPU of the same machine. Writes
bench/results/embedder_speed.json (embedder_speed_cuda.json with --device cuda) and prints a
Markdown table row.

    python bench/embedder_speed.py [--data FILE --text-column text] [--n 2000] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"

SUBJECTS = ["My order", "The refund", "Our team", "The market", "This phone", "The app", "Shares"]
VERBS = ["arrived", "failed", "rose", "dropped", "crashed", "improved", "was delayed", "looks fine"]
TAILS = [
    "today.",
    "after the update.",
    "by three percent.",
    "again this week.",
    "without any notice.",
    "in the morning.",
    "and support did not answer.",
    "better than expected.",
]


def generate_sentences(n: int, seed: int = 13) -> list[str]:
    """Short, varied, deterministic sentences (5-12 words)."""
    rng = random.Random(seed)
    return [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(TAILS)}" for _ in range(n)]


def read_sentences(path: str, column: str, n: int) -> list[str]:
    from threefold.core.tables import read_records

    records = read_records(path, required=(column,), non_empty=(column,))
    return [str(r.values[column]) for r in records][:n]


def sentences_for(args: argparse.Namespace) -> list[str]:
    """The --data file's text column, else generated sentences; --n of them."""
    if args.data:
        return read_sentences(args.data, args.text_column, args.n)
    return generate_sentences(args.n)


def measure(variants: dict, sentences: list[str], batch_size: int, latency_runs: int) -> dict:
    """Time every variant in alternating rounds, so a change in machine load hits all alike."""
    for embedder in variants.values():
        embedder.encode(sentences[: batch_size * 2], batch_size=batch_size)  # warm-up
    rounds = max(1, min(5, len(sentences) // batch_size))
    chunks = [sentences[i::rounds] for i in range(rounds)]
    seconds = dict.fromkeys(variants, 0.0)
    best = dict.fromkeys(variants, 0.0)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in variants}
    for chunk in chunks:
        for name, embedder in variants.items():
            started = time.perf_counter()
            parts[name].append(embedder.encode(chunk, batch_size=batch_size))
            elapsed = time.perf_counter() - started
            seconds[name] += elapsed
            best[name] = max(best[name], len(chunk) / elapsed)
    latencies: dict[str, list[float]] = {name: [] for name in variants}
    for sentence in sentences[:latency_runs]:
        for name, embedder in variants.items():
            started = time.perf_counter()
            embedder.encode([sentence])
            latencies[name].append((time.perf_counter() - started) * 1000)
    return {
        name: {
            "vectors": np.vstack(parts[name]),
            "seconds": round(seconds[name], 3),
            "sentences_per_s": round(len(sentences) / seconds[name], 1),
            "best_round_sentences_per_s": round(best[name], 1),
            "latency_p50_ms": round(statistics.median(latencies[name]), 2),
        }
        for name in variants
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="CSV/JSON/JSONL file with sentences (default: generated)")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--n", type=int, default=2000, help="number of sentences")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--latency-runs", type=int, default=50)
    parser.add_argument("--model", default=None, help="model folder or hub id (default: MiniLM)")
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default="cpu", help="cuda: GPU fp32 against CPU fp32"
    )
    parser.add_argument("--out", help="results JSON [default: bench/results/embedder_speed*.json]")
    args = parser.parse_args(argv)
    if args.device == "cuda":
        return _main_cuda(args)

    from threefold.core.base_model import configure_offline

    configure_offline()
    import torch

    from threefold.core.base_model import base_model_from_env
    from threefold.core.embedder import Embedder

    sentences = sentences_for(args)
    load_before = round(os.getloadavg()[0], 2)
    model = args.model or base_model_from_env()
    fp32 = Embedder(model, device="cpu", batch_size=args.batch_size).load()
    int8 = Embedder(model, device="cpu", batch_size=args.batch_size, quantize=True).load()
    results = measure({"fp32": fp32, "int8": int8}, sentences, args.batch_size, args.latency_runs)
    fp32_result, int8_result = results["fp32"], results["int8"]
    cosine = float((fp32_result.pop("vectors") * int8_result.pop("vectors")).sum(axis=1).mean())

    result = {
        "benchmark": "embedder_speed",
        "model_id": fp32.model_id,
        "device": "cpu",
        "data": args.data or f"generated ({args.n} short sentences)",
        "n_sentences": len(sentences),
        "mean_words": round(float(np.mean([len(s.split()) for s in sentences])), 1),
        "batch_size": args.batch_size,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        # Other processes share the CPU on busy machines; a load above cpu_count slows every figure.
        "load_average_1m_start_end": [load_before, round(os.getloadavg()[0], 2)],
        "machine": platform.processor() or platform.machine(),
        "fp32": fp32_result,
        "int8": int8_result,
        "int8_speedup": round(int8_result["sentences_per_s"] / fp32_result["sentences_per_s"], 2),
        "int8_mean_cosine_to_fp32": round(cosine, 4),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    _write(result, args.out or RESULTS_DIR / "embedder_speed.json")
    print(
        "| embedder_speed | MiniLM-L6 CPU, "
        f"{len(sentences)} sentences, batch {args.batch_size}, {result['torch_threads']} threads "
        f"| fp32 {fp32_result['sentences_per_s']} sent/s (p50 {fp32_result['latency_p50_ms']} ms) "
        f"| int8 {int8_result['sentences_per_s']} sent/s (p50 {int8_result['latency_p50_ms']} ms), "
        f"x{result['int8_speedup']}, cosine to fp32 {result['int8_mean_cosine_to_fp32']} |"
    )
    return 0


def _main_cuda(args: argparse.Namespace) -> int:
    """GPU fp32 against CPU fp32 on the same machine (int8 dynamic quantization is CPU only)."""
    from threefold.core.base_model import base_model_from_env, configure_offline

    configure_offline()
    import torch

    from threefold.core.embedder import Embedder

    if not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA GPU on this machine")
    sentences = sentences_for(args)
    model = args.model or base_model_from_env()
    gpu = Embedder(model, device="cuda", batch_size=args.batch_size).load()
    cpu = Embedder(model, device="cpu", batch_size=args.batch_size).load()
    results = measure({"cuda": gpu, "cpu": cpu}, sentences, args.batch_size, args.latency_runs)
    cosine = float((results["cuda"].pop("vectors") * results["cpu"].pop("vectors")).sum(1).mean())
    speedup = results["cuda"]["sentences_per_s"] / results["cpu"]["sentences_per_s"]
    result = {
        "benchmark": "embedder_speed_cuda",
        "model_id": gpu.model_id,
        "device": "cuda",
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "data": args.data or f"generated ({args.n} short sentences)",
        "n_sentences": len(sentences),
        "batch_size": args.batch_size,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cuda": results["cuda"],
        "cpu": results["cpu"],
        "gpu_speedup": round(speedup, 2),
        "cpu_mean_cosine_to_gpu": round(cosine, 4),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    _write(result, args.out or RESULTS_DIR / "embedder_speed_cuda.json")
    print(
        f"| embedder_speed_cuda | MiniLM-L6 fp32, {result['gpu']}, {len(sentences)} sentences, "
        f"batch {args.batch_size} | GPU {results['cuda']['sentences_per_s']} sent/s "
        f"(p50 {results['cuda']['latency_p50_ms']} ms) | CPU ({result['cpu_count']} cores) "
        f"{results['cpu']['sentences_per_s']} sent/s, x{result['gpu_speedup']}, "
        f"cosine {result['cpu_mean_cosine_to_gpu']} |"
    )
    return 0


def _write(result: dict, path: str | Path) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
