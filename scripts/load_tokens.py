"""Load test: stream many tokens of language-model logits through the metrics and show that memory stays flat.

    python scripts/load_tokens.py                           # 10 million tokens, V = 32000, chunks of (8, 512, V)
    python scripts/load_tokens.py --tokens 200000 --json out.json
    python scripts/load_tokens.py --metrics cross_entropy   # CrossEntropy + Perplexity instead of XentMetrics

Each chunk is a fresh (batch, seq, vocab) float32 logits tensor in token layout (``class_dim=-1``), written into
one reused buffer so that the script itself allocates nothing per chunk, with ``ignore_index`` padding at the end
of every sequence as a tokenizer would leave it. The metric state is a fixed set of float64 sums, so its size
(``state_bytes``) and the process's resident memory must not grow with the number of tokens.

Reports tokens/s for the metric updates alone (also without the first chunk, which may compile the fused pass)
and for the whole loop (generation included), state bytes before and after, and resident memory after the first
chunk, half-way and at the end. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from xent_plugin.metrics import CrossEntropy, Perplexity, XentMetrics

IGNORE_INDEX = -100
# Share of each sequence's tail that is padding (ignored targets).
PADDING_SHARE = 0.05


@dataclass
class LoadReport:
    tokens: int
    counted_tokens: int
    vocab_size: int
    chunk_shape: tuple[int, int, int]
    chunks: int
    metrics: str
    threads: int
    update_seconds: float
    first_chunk_update_seconds: float
    total_seconds: float
    update_tokens_per_s: float
    steady_update_tokens_per_s: float
    total_tokens_per_s: float
    state_bytes_before: int
    state_bytes_after: int
    rss_mib_after_first_chunk: float
    rss_mib_half_way: float
    rss_mib_at_end: float
    peak_rss_mib: float
    cross_entropy: float
    perplexity: float


def stream_tokens(
    tokens: int,
    vocab_size: int = 32_000,
    batch: int = 8,
    seq_len: int = 512,
    metrics: str = "xent",
    seed: int = 0,
    progress: bool = False,
) -> LoadReport:
    """Feed ``tokens`` tokens (rounded up to whole chunks) through the chosen metrics and measure."""
    chunk_tokens = batch * seq_len
    chunks = max(1, math.ceil(tokens / chunk_tokens))
    generator = torch.Generator().manual_seed(seed)
    logits = torch.empty(batch, seq_len, vocab_size, dtype=torch.float32)
    target = torch.empty(batch, seq_len, dtype=torch.long)
    padded_from = seq_len - int(seq_len * PADDING_SHARE)
    tracked = _metrics(metrics)
    state_bytes_before = _state_bytes(tracked)

    update_seconds = first_chunk_seconds = 0.0
    rss_first = rss_half = 0.0
    start = time.perf_counter()
    for index in range(chunks):
        logits.normal_(generator=generator)
        target.random_(0, vocab_size, generator=generator)
        target[:, padded_from:] = IGNORE_INDEX
        update_start = time.perf_counter()
        for metric in tracked:
            metric.update(logits, target)
        update_seconds += time.perf_counter() - update_start
        if index == 0:
            # The first large batch may compile the fused pass (xent_plugin.functional.fused): a one-off cost.
            first_chunk_seconds = update_seconds
            rss_first = _rss_mib()
        if index == chunks // 2:
            rss_half = _rss_mib()
        if progress and (index + 1) % max(1, chunks // 20) == 0:
            done = (index + 1) * chunk_tokens
            rate = done / (time.perf_counter() - start)
            print(f"{done:,} tokens, {rate:,.0f} tokens/s, RSS {_rss_mib():.0f} MiB", file=sys.stderr, flush=True)
    total_seconds = time.perf_counter() - start

    values = _values(tracked)
    processed = chunks * chunk_tokens
    return LoadReport(
        tokens=processed,
        counted_tokens=chunks * batch * padded_from,
        vocab_size=vocab_size,
        chunk_shape=(batch, seq_len, vocab_size),
        chunks=chunks,
        metrics=metrics,
        threads=torch.get_num_threads(),
        update_seconds=update_seconds,
        first_chunk_update_seconds=first_chunk_seconds,
        total_seconds=total_seconds,
        update_tokens_per_s=processed / update_seconds,
        steady_update_tokens_per_s=(
            (processed - chunk_tokens) / (update_seconds - first_chunk_seconds) if chunks > 1 else math.nan
        ),
        total_tokens_per_s=processed / total_seconds,
        state_bytes_before=state_bytes_before,
        state_bytes_after=_state_bytes(tracked),
        rss_mib_after_first_chunk=rss_first,
        rss_mib_half_way=rss_half,
        rss_mib_at_end=_rss_mib(),
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        cross_entropy=values["cross_entropy"],
        perplexity=values["perplexity"],
    )


def _metrics(name: str) -> list:
    options = dict(class_dim=-1, ignore_index=IGNORE_INDEX)
    if name == "xent":
        return [XentMetrics(task="multiclass", **options)]
    if name == "cross_entropy":
        return [CrossEntropy(**options), Perplexity(**options)]
    raise ValueError(f"`--metrics` must be 'xent' or 'cross_entropy', got {name!r}.")


def _values(tracked: list) -> dict[str, float]:
    if len(tracked) == 1:
        values = tracked[0].compute()
        return {"cross_entropy": values["cross_entropy"].item(), "perplexity": values["perplexity"].item()}
    return {"cross_entropy": tracked[0].compute().item(), "perplexity": tracked[1].compute().item()}


def _state_bytes(tracked: list) -> int:
    """Bytes of every registered state tensor: what a sync would send and what a checkpoint would hold."""
    return sum(
        getattr(metric, name).numel() * getattr(metric, name).element_size()
        for metric in tracked
        for name in metric._defaults
    )


def _rss_mib() -> float:
    """Resident memory now (not the peak), from /proc where there is one."""
    statm = Path("/proc/self/statm")
    if statm.exists():
        return int(statm.read_text().split()[1]) * resource.getpagesize() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> LoadReport:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=10_000_000, help="tokens to stream (default 10 million)")
    parser.add_argument("--vocab", type=int, default=32_000, help="vocabulary size V")
    parser.add_argument("--batch", type=int, default=8, help="sequences per chunk")
    parser.add_argument("--seq-len", type=int, default=512, help="tokens per sequence")
    parser.add_argument("--metrics", choices=["xent", "cross_entropy"], default="xent")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    report = stream_tokens(args.tokens, args.vocab, args.batch, args.seq_len, args.metrics, args.seed, progress=True)
    for key, value in asdict(report).items():
        print(f"{key:>26}: {value:,.1f}" if isinstance(value, float) else f"{key:>26}: {value}")
    if args.json is not None:
        args.json.write_text(json.dumps(asdict(report), indent=2))
    return report


if __name__ == "__main__":
    main()
