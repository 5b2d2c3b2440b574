"""Rebuild the README's benchmark table from bench/results/*.json.

python -m bench.report            # rewrite the table between the README markers
python -m bench.report --print    # only print it
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from threefold.core.training_config import TrainingConfig

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"
START, END = "<!-- bench-table:start -->", "<!-- bench-table:end -->"
HEADER = (
    "| benchmark | data set, split | threefold | baseline / reference (same run unless noted) | "
    "speed | script |\n| --- | --- | --- | --- | --- | --- |"
)

Row = tuple[str, str, str, str, str, str]


def _f(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _weights_note(d: dict[str, Any]) -> str:
    """The device runs carried the base weights rounded to fp16 (see the file's weights_note)."""
    return "; base weights rounded to fp16 in transit" if d.get("weights_note") else ""


def _load_note(machine: dict[str, Any] | None) -> str:
    load = (machine or {}).get("load_average_at_start") or (machine or {}).get("load_average_1m")
    first = load[0] if isinstance(load, list) else load
    return f" (CPU shared, load {first:.0f})" if isinstance(first, float) and first > 3 else ""


def classifier_fpb(d: dict[str, Any]) -> list[Row]:
    device = d.get("train_device") or "cpu"
    where = "" if device == "cpu" else f", trained on {device} (torch {d['machine']['torch']})"
    where += _weights_note(d)
    batches = d.get("hyperparameters", {}).get("batches")
    where = f", {batches} batches{where}" if batches else where
    return [
        (
            f"Sentiment classifier (MiniLM-L6 fine-tune, 3 epochs{where})",
            f"Financial PhraseBank `fpb_dev.csv`, stratified 80/20, seed 42 (test n={d['n_test']})",
            f"acc {_f(d['accuracy'])}, macro-F1 {_f(d['macro_f1'])}; int8 acc "
            f"{_f(d['int8_accuracy'])}, macro-F1 {_f(d['int8_macro_f1'])}",
            "FinBERT 0.86 / 0.84 (published, all of FPB)",
            f"train {d['train_seconds']:.0f} s; predict fp32 {d['fp32_sentences_per_second']:.0f}"
            f" / int8 {d['int8_sentences_per_second']:.0f} sent/s{_load_note(d.get('machine'))}",
            "`bench/classifier_fpb.py`",
        )
    ]


def classifier_distill(d: dict[str, Any]) -> list[Row]:
    teacher = next((r["base_model"] for r in d["runs"] if r["variant"].startswith("teacher")), None)
    if teacher is None:  # a run cut before its teacher row: nothing to compare yet
        return []
    ((_, *cells),) = classifier_recipe(d)
    title = f"Distillation (MiniLM-L6 student, teacher {_base_name(teacher)} fine-tuned here)"
    return [(title + (" — partial run" if d.get("partial") else ""), *cells)]


def classifier_recipe(d: dict[str, Any]) -> list[Row]:
    def cell(row: dict[str, Any]) -> str:
        low, high = row["accuracy_spread"]
        shift = row["accuracy_vs_baseline"]
        fewer = f" [seeds {row['seeds']} only]" if len(row["seeds"]) < len(d["seeds"]) else ""
        return (
            f"{row['variant']}{fewer} {_f(row['accuracy'])} ({_f(low)}–{_f(high)}"
            f"{'' if shift is None else f', {shift:+.3f}'}), F1 {_f(row['macro_f1'])}"
        )

    base, *levers = d["summary"]
    partial = " — partial run" if d.get("partial") else ""
    devices = sorted({r.get("device", "cpu") for r in d["runs"]} - {"cpu"})
    where = f", trained on {', '.join(devices)} (torch {d['machine']['torch']})" if devices else ""
    where += _weights_note(d)
    return [
        (
            f"Fine-tune recipe ablation (MiniLM-L6, one lever each{where})" + partial,
            f"{_dataset_name(d['dataset'])}: {d['split']}; seeds {d['seeds']}; acc mean "
            "(min–max, paired difference from the baseline)",
            "; ".join(cell(row) for row in levers),
            f"{cell(base)}; goal: {d['goal']}",
            "train s mean: "
            + ", ".join(f"{r['variant']} {r['train_seconds_mean']:.0f}" for r in d["summary"]),
            "`bench/classifier_recipe.py`",
        )
    ]


def classifier_base_fine_tune(d: dict[str, Any]) -> list[Row]:
    """Teacher-only recipe runs: the train defaults on a stronger base (`--base`), against the
    default base's baseline rows on the same splits and seeds (`baseline_reference`)."""
    (row,) = d["summary"]
    base = _base_name(next(r["base_model"] for r in d["runs"]))
    devices = sorted({r.get("device", "cpu") for r in d["runs"]} - {"cpu"})
    where = f", trained on {', '.join(devices)} (torch {d['machine']['torch']})" if devices else ""
    reference = d.get("baseline_reference")
    compared = (
        f"all-MiniLM-L6-v2 (default) {_f(reference['accuracy'])} "
        f"({_f(reference['accuracy_spread'][0])}–{_f(reference['accuracy_spread'][1])}), "
        f"F1 {_f(reference['macro_f1'])}, same splits and seeds (`{Path(reference['file']).name}`)"
        if reference
        else "no baseline in this run"
    )
    low, high = row["accuracy_spread"]
    return [
        (
            f"Fine-tune on base {base} (train defaults with a 10 % eval split, "
            f"`classifier train --base`{where}{_weights_note(d)})",
            f"{_dataset_name(d['dataset'])}: {d['split']}; seeds {d['seeds']}; acc mean (min–max)",
            f"{_f(row['accuracy'])} ({_f(low)}–{_f(high)}), F1 {_f(row['macro_f1'])}",
            f"{compared}; goal: {d['goal']}",
            f"train s mean {row['train_seconds_mean']:.0f}",
            "`bench/classifier_recipe.py` (teacher row)",
        )
    ]


def _dataset_name(path: str) -> str:
    """A result file's data set as the table names it."""
    known = {
        "financial_phrasebank": "Financial PhraseBank",
        "twitter_fin_news_sentiment": "Twitter financial news sentiment",
        "twitter_fin_news_topic": "Twitter financial news topic",
    }
    file = Path(path)
    return f"{known.get(file.parent.name, file.parent.name)} `{file.name}`"


def classifier_small_data(d: dict[str, Any]) -> list[Row]:
    def cell(row: dict[str, Any]) -> str:
        low, high = row["accuracy_spread"]
        return f"k={row['k']}: {_f(row['accuracy'])} ({_f(low)}–{_f(high)})"

    summary = d["summary"]
    auto = [r for r in summary if r["row"] == "threefold auto"]
    forced = [r for r in summary if r["row"] == "threefold contrastive"]
    sweep = [r for r in summary if r["row"].startswith("threefold contrastive, ")]  # --steps
    base = [r for r in summary if r["row"] == "baseline"]
    shown = auto or sweep
    paths = ", ".join(f"k={r['k']} {'/'.join(r['strategy'])}" for r in auto)
    threefold = "acc " + "; ".join(cell(r) for r in shown)
    threefold += f" (path: {paths})" if auto else " (contrastive path forced)"
    threshold = TrainingConfig().small_data_threshold
    outdated = [r["k"] for r in auto if "fine-tune" in r["strategy"] and r["k"] < threshold]
    if outdated:
        threefold += (
            f"; k={', '.join(map(str, outdated))} ran before `auto` moved its switch to "
            f"{threshold} per label: today it takes the contrastive path"
        )
    if forced:
        threefold += "; contrastive forced " + "; ".join(cell(r) for r in forced)
    partial = " — partial run" if d.get("partial") else ""
    base_name = _base_name(d.get("base_model", "all-MiniLM-L6-v2 (default)"))
    setting = "train defaults" if auto else sweep[0]["row"].removeprefix("threefold ")
    return [
        (
            f"Small-data classifier ({setting}, base {base_name})" + partial,
            f"Financial PhraseBank `fpb_dev.csv`: {d['split']}; seeds "
            f"{sorted({r['seed'] for r in d['runs']})}; mean (min–max)",
            threefold,
            "the same base's frozen embeddings + logistic regression: acc "
            + "; ".join(cell(r) for r in base)
            + "; goal k=16 ≥ 0.70",
            "train s mean: "
            + ", ".join(f"k={r['k']} {r['train_seconds_mean']:.0f}" for r in shown),
            "`bench/classifier_quality.py small-data`",
        )
    ]


def classifier_multitask(d: dict[str, Any]) -> list[Row]:
    def cell(row: dict[str, Any], precision: str) -> str:
        def spread(s: dict[str, Any]) -> str:
            low, high = s.get("accuracy_spread") or (None, None)
            return "" if low is None else f" ({_f(low)}–{_f(high)})"

        return ", ".join(
            f"{task} {_f(s['accuracy'])}{spread(s)} / {_f(s['macro_f1'])}"
            for task, s in row[precision].items()
        )

    def cells(row: dict[str, Any]) -> str:
        return f"fp32: {cell(row, 'fp32')}" + (
            f"; int8: {cell(row, 'int8')}" if "int8" in row else ""
        )

    one, two = d["rows"]["one multi-task model"], d["rows"]["two classifiers"]
    gaps = d["accuracy_difference_points"]
    speed = d["speedup_vs_two_classifiers_fp32"]
    weighting = "on" if d["config"].get("class_weighting") else "off"
    title = "Alerts: one multi-task model (topic + sentiment heads) vs two classifiers"
    base = d.get("base_model", "")
    base = "MiniLM-L6" if "MiniLM" in base else _base_name(base)
    if d.get("device", "cpu") != "cpu":
        title += f" (trained on {d['device']}, torch {d['machine']['torch']}{_weights_note(d)})"
    recipe = f"{d['config']['epochs']:g} epochs, learning rate {d['config']['learning_rate']:g}"
    if d.get("per_label"):
        paths = d.get("strategy", {}).get("one multi-task model", "?")
        title = f"Alerts on small data ({d['per_label']} per label): " + title[len("Alerts: ") :]
        recipe = f"training path: {paths} (every model)"
    return [
        (
            title,
            "Twitter financial news topic and sentiment `train.csv` (two files): "
            f"{d['split']}; {base}, {recipe}, class weighting {weighting}; acc"
            + (" mean (min–max)" if d.get("seeds") else "")
            + " / macro-F1",
            f"{cells(one)}; accuracy vs the two fp32 classifiers: "
            + ", ".join(
                f"{precision} {task} {points:+.1f} pt"
                for precision, tasks in gaps.items()
                for task, points in tasks.items()
            ),
            f"two classifiers {cells(two)}; goal within 0.5 pt; Twitter goals sentiment 0.89, "
            "topic 0.91",
            (
                f"scoring ×{speed['multi-task int8 (one pass)']:.2f} (one pass, int8) and "
                f"×{speed['multi-task fp32 (one pass)']:.2f} (fp32) vs two fp32 classifiers; "
                if speed
                else "scoring not timed (--no-int8); "
            )
            + f"train {one['train_seconds']:.0f} s vs "
            f"{sum(two['train_seconds'].values()):.0f} s{_load_note(d.get('machine'))}",
            "`bench/classifier_multitask.py`",
        )
    ]


def classifier_multitask_speed(d: dict[str, Any]) -> list[Row]:
    rates, speedup = d["headlines_per_second_best_round"], d["speedup_vs_today"]
    return [
        (
            "Alerts scoring: one multi-task pass vs two classifiers (MiniLM-L6, max length "
            f"{d['max_length']})",
            f"Twitter financial news topic `train.csv`, {d['dataset'].split('(')[-1].rstrip(')')}",
            "; ".join(f"{name}: {rates[name]:.0f}/s (×{speedup[name]:.2f})" for name in rates),
            f"{d['baseline']}; goal ≥ 1.8× (one pass, int8); accuracy: {d['accuracy']}",
            f"best of {len(next(iter(d['rounds_seconds'].values())))} interleaved rounds"
            f"{_load_note(d.get('machine'))}",
            "`bench/classifier_quality.py multitask-speed`",
        )
    ]


def _base_name(base: str) -> str:
    """A base model's README name: the packaged MiniLM, the opt-in mpnet at its path (the
    folder `models fetch-base` writes is named after it), or any other local folder as is."""
    if "MiniLM" in base:
        return base
    if "mpnet" in base.lower():
        return f"all-mpnet-base-v2 (`models fetch-base`, {base})"
    return f"local base model {base}"


def classifier_bases(d: dict[str, Any]) -> list[Row]:
    def name(row: dict[str, Any]) -> str:
        return _base_name(row["base"])

    baseline, *others = d["rows"]

    def cell(row: dict[str, Any]) -> str:
        low, high = row["accuracy_spread"]
        return (
            f"{name(row)}, {row['parameters'] / 1e6:.1f}M params: acc {_f(row['accuracy'])} "
            f"({_f(low)}–{_f(high)}), macro-F1 {_f(row['macro_f1'])}"
        )

    return [
        (
            "Base models, frozen (mean-pooled embeddings + logistic regression)",
            f"Financial PhraseBank `fpb_dev.csv`, stratified 80/20, seeds {d['seeds']}",
            "; ".join(cell(row) for row in others),
            cell(baseline),
            "; ".join(
                f"{name(r).split(' (')[0]} {r['sentences_per_s']:.0f} sent/s" for r in d["rows"]
            )
            + " (embedding the whole file, batch 64, max length 128)",
            "`bench/classifier_quality.py bases`",
        )
    ]


def embedder_speed(d: dict[str, Any]) -> list[Row]:
    return [
        (
            "Sentence embedder (MiniLM-L6)",
            f"{d['n_sentences']} generated short sentences, batch {d['batch_size']}",
            f"fp32 {d['fp32']['sentences_per_s']:.0f} sent/s; int8 "
            f"{d['int8']['sentences_per_s']:.0f} sent/s (×{d['int8_speedup']}, cosine to fp32 "
            f"{d['int8_mean_cosine_to_fp32']})",
            "fp32 is the baseline",
            f"p50 one sentence: fp32 {d['fp32']['latency_p50_ms']} ms, int8 "
            f"{d['int8']['latency_p50_ms']} ms",
            "`bench/embedder_speed.py`",
        )
    ]


def embedder_speed_cuda(d: dict[str, Any]) -> list[Row]:
    gpu, cpu = d["cuda"], d["cpu"]
    return [
        (
            f"Sentence embedder (MiniLM-L6, fp32) on a GPU: {d['gpu']}, torch {d['torch']}"
            + _weights_note(d),
            f"{d['n_sentences']} generated short sentences, batch {d['batch_size']}",
            f"GPU {gpu['sentences_per_s']:.0f} sent/s (×{d['gpu_speedup']} the CPU; cosine to "
            f"the CPU's vectors {d['cpu_mean_cosine_to_gpu']})",
            f"the same machine's CPU ({d['cpu_count']} cores), fp32: "
            f"{cpu['sentences_per_s']:.0f} sent/s",
            f"p50 one sentence: GPU {gpu['latency_p50_ms']} ms, CPU {cpu['latency_p50_ms']} ms",
            "`bench/embedder_speed.py --device cuda`",
        )
    ]


def _latency(bot: dict[str, Any]) -> str:
    latency = bot["latency_ms"]
    return f"p50/p95 {latency['p50']:.0f}/{latency['p95']:.0f} ms per query"


def qa_faq(d: dict[str, Any]) -> list[Row]:
    """One row per data set: the default bot (intent head + retrieval) against retrieval only
    (`--no-intent-model`) and BM25, all from the same run."""
    rows: list[Row] = []
    load = _load_note(d.get("machine"))
    clinc = d["datasets"].get("clinc150")
    if clinc:
        intent, retrieval = clinc["bots"]["intent"], clinc["bots"]["retrieval"]
        bot, base, bm25 = intent["bot"], retrieval["bot"], clinc["bm25"]
        met = bot["in_scope_accuracy"] >= 0.95 and bot["oos_recall"] >= 0.70
        seed = intent["build"].get("intent", {}).get("training", {}).get("seed", 13)
        outcomes = " / ".join(f"{k} {v}" for k, v in bot["outcomes"].items())
        rows.append(
            (
                "FAQ bot, intent head + retrieval (default build: encoder fine-tuned 300 steps, "
                "`--oos oos_train.csv`, OOS prior 0.2, at most 1 % of held-out right answers "
                "declined)",
                "CLINC150 `kb.csv` → `dev_queries.csv` (3,000 in scope + 100 out of scope), "
                f"build seed {seed}",
                f"in-scope acc {_f(bot['in_scope_accuracy'])}, OOS recall "
                f"{_f(bot['oos_recall'])}; top-1 without abstaining "
                f"{_f(intent['bot_top1_no_abstention'])}, MRR {_f(bot['mrr'])}; outcomes "
                f"{outcomes} (goal 0.95 and 0.70 at once: {'met' if met else 'missed'})",
                f"retrieval only (`--no-intent-model`, same run): in-scope "
                f"{_f(base['in_scope_accuracy'])}, OOS recall {_f(base['oos_recall'])}, top-1 "
                f"{_f(retrieval['bot_top1_no_abstention'])}, MRR {_f(base['mrr'])}; BM25 top-1 "
                f"{_f(bm25['top1_accuracy'])}, MRR {_f(bm25['mrr'])}; fine-tuned BERT 0.969 / "
                "0.40–0.52 (published)",
                f"build {intent['build']['build_seconds']:.0f} s intent vs "
                f"{retrieval['build']['build_seconds']:.0f} s retrieval; p50 "
                f"{bot['latency_ms']['p50']:.1f} vs {base['latency_ms']['p50']:.1f} ms per "
                f"query{load}",
                "`bench/qa_faq.py`",
            )
        )
    banking = d["datasets"].get("banking77")
    if banking:
        intent, retrieval = banking["bots"]["intent"], banking["bots"]["retrieval"]
        folds = ", ".join(_f(fold["top1"]) for fold in intent["folds"])
        rows.append(
            (
                "FAQ bot, intent head + retrieval",
                "banking77 `kb.csv`, 5-fold cross-validation (stratified by id, ~2,000 queries "
                "per fold; fold assignment and builds seed 13)",
                f"top-1 {_f(intent['top1_mean'])} (folds {folds}; goal 0.94 "
                f"{'met' if intent['top1_mean'] >= 0.94 else 'missed'}), MRR "
                f"{_f(intent['mrr_mean'])}",
                f"retrieval only, same run: top-1 {_f(retrieval['top1_mean'])}, MRR "
                f"{_f(retrieval['mrr_mean'])}; BM25 top-1 {_f(banking['bm25']['top1_accuracy'])}, "
                f"MRR {_f(banking['bm25']['mrr'])}"
                + "".join(
                    f"; {peer['method']}, {_base_name(peer['base'])}: top-1 "
                    f"{_f(peer['top1_mean'])} (folds "
                    f"{', '.join(_f(top1) for top1 in peer['top1_per_fold'])})"
                    for peer in banking.get("peers", [])
                ),
                f"build per fold: intent {intent['build_seconds_mean']:.0f} s (fine-tunes and "
                f"re-embeds), retrieval {retrieval['build_seconds_mean']:.1f} s from the file "
                f"embedded once ({banking['embed_all_seconds']:.0f} s){load}",
                "`bench/qa_faq.py`",
            )
        )
    stack = d["datasets"].get("stackfaq")
    if stack:
        intent, bm25 = stack["bots"]["intent"], stack["bm25"]
        bot = intent["bot"]
        rows.append(
            (
                "FAQ bot, StackFAQ (one question per FAQ: no intent model, both bots identical)",
                "StackFAQ `kb.csv` → `dev_queries.csv` (639 queries)",
                f"MRR {_f(bot['mrr'])}, recall@5 {_f(bot['recall_at_5'])}, top-1 "
                f"{_f(intent['bot_top1_no_abstention'])}, answered correctly "
                f"{_f(bot['in_scope_accuracy'])}",
                f"BM25 (question+answer) MRR {_f(bm25['mrr'])}, top-1 "
                f"{_f(bm25['top1_accuracy'])}; published BM25 MAP 0.64",
                f"build {intent['build']['build_seconds']:.0f} s; {_latency(bot)}{load}",
                "`bench/qa_faq.py`",
            )
        )
    return rows


def qa_api_load(d: dict[str, Any]) -> list[Row]:
    limit = d["encode_limit"]
    return [
        (
            "FAQ bot API under load (micro-batched encoder)",
            f"`POST /api/chat`, shipped store FAQ (intent bot), {d['clients']} concurrent "
            f"clients{_load_note(d.get('machine'))}",
            f"{d['requests_per_s']:.1f} req/s, p50 {d['p50_ms']:.0f} ms, p95 {d['p95_ms']:.0f} "
            f"ms, {d['errors']} errors",
            f"encode-bound limit in the same run: {limit['single_encodes_per_s']:.1f} single "
            f"encodes/s ({limit['batch8_texts_per_s']:.1f} texts/s in batches of 8) → ratio "
            f"{d['ratio_to_encode_limit']:.2f} (goal ≥ 0.7)",
            d["server"],
            "`bench/qa_api_load.py`",
        )
    ]


def recs_movielens(d: dict[str, Any]) -> list[Row]:
    r, model, peers = d["evaluation"], d["model"], d["peers"]
    no_text = r["ablation"]["model_without_text_features"]["ndcg@10"]
    no_sequence = r["ablation"]["model_without_sequence"]["ndcg@10"]
    named = ", ".join(
        f"{name} {_f(peers[name]['ndcg@10'], 4)}"
        for name in sorted(peers, key=lambda n: -peers[n]["ndcg@10"])
    )
    return [
        (
            "Recommender (fine-tuned text encoder + sequence ensemble: text-aware ranker and "
            "ID-only SASRec + tuned combiner)",
            f"MovieLens-100k, leave-last-out per user ({r['users']} users), all unseen items "
            f"ranked, seed {d['seed']}",
            f"ndcg@10 {_f(model['ndcg@10'], 4)}, hr@10 {_f(model['hr@10'], 4)}, "
            f"MRR {_f(model['mrr'], 4)} = {d['ratio_to_strongest_peer']:.2f}x the strongest "
            f"peer; ablations: no text features {_f(no_text, 4)}, "
            f"no sequence {_f(no_sequence, 4)}",
            f"ndcg@10: {named}",
            f"train {model['train_seconds']:.0f} s{_load_note(d.get('machine'))}",
            "`bench/recs_movielens.py`",
        )
    ]


def recs_cold_start(d: dict[str, Any]) -> list[Row]:
    m = d["methods"]
    seeds = d.get("seeds", [d.get("seed")])

    def figure(part: dict[str, Any], key: str) -> str:
        low, high = part.get(f"{key}_spread") or (None, None)
        spread = f" ({_f(low, 4)}–{_f(high, 4)})" if low is not None and len(seeds) > 1 else ""
        return f"{_f(part[key], 4)}{spread}"

    def cell(name: str) -> str:
        cold, short = m[name]["cold_items"], m[name]["short_histories"]
        return (
            f"cold HR@10 {figure(cold, 'hr@10')}, warm ndcg@10 "
            f"{figure(m[name]['warm_items'], 'ndcg@10')}, 1-3 events HR@10 "
            f"{figure(short, 'hr@10')}"
        )

    names = {
        "fused_ranker": "served ranker: fused",
        "fused_ranker_with_new_item_slot": "fused with the opt-in new-item slot",
        "text_sequence_ranker": "text-aware sequence ranker alone",
        "sasrec_id_only": "ID-only SASRec",
        "popularity": "popularity",
    }
    shown = [name for name in names if name in m]
    product, others = shown[0], shown[1:]
    seconds = m.get("fused_ranker", m["text_sequence_ranker"])["train_seconds"]
    averaged = "; mean (min–max) over the seeds" if len(seeds) > 1 else ""
    return [
        (
            f"Recommender cold start ({names[product]})",
            f"MovieLens-100k leave-last-out; {d['cold_items']} items ({d['cold_share']:.0%}, "
            f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}) removed from all "
            f"training histories (~{m[product]['cold_items']['users']:.0f} users with a cold "
            f"test item){averaged}",
            cell(product),
            "; ".join(f"{names[name]}: {cell(name)}" for name in others),
            f"train {seconds:.0f} s{_load_note(d.get('machine'))}",
            "`bench/recs_cold_start.py`",
        )
    ]


def recs_served(d: dict[str, Any]) -> list[Row]:
    v = d["variants"]

    def cell(name: str) -> str:
        row = v[name]
        pool = (
            f", all-items top 10 in the pool {row['top_k_in_pool']:.3f}"
            if name != "all_items"
            else ""
        )
        return f"ndcg@10 {_f(row['ndcg@10'], 4)}, hr@10 {_f(row['hr@10'], 4)}{pool}"

    names = {
        "all_items": "all unseen items ranked (the recs eval figure)",
        "served_without_sequence_candidates": "served without the sequence candidates",
        "served_200_cooccurrence_neighbours": "served with 200 co-occurrence neighbours per item",
        "served_fp32_queries": "served with fp32 query vectors",
        "served_int8_queries": "served with int8 query vectors",
        "served_before": "served before (none of the changes)",
    }
    return [
        (
            "Recommender as served (`Recommender.recommend`: candidate pool, "
            f"{d.get('served_query_vectors', 'int8')} query vectors, the model's co-occurrence "
            "neighbours)",
            f"MovieLens-100k, leave-last-out per user ({v['served']['users']} users), k=10, "
            f"one model (recs build defaults, seed {d['seed']})",
            cell("served"),
            "; ".join(f"{label}: {cell(name)}" for name, label in names.items() if name in v),
            f"{v['served']['seconds_per_request'] * 1000:.0f} ms per request"
            f"{_load_note(d.get('machine'))}",
            "`bench/recs_served.py`",
        )
    ]


def recs_api_load(d: dict[str, Any]) -> list[Row]:
    miss, hit, conc = d["cache_miss"], d["cache_hit"], d["concurrent"]
    return [
        (
            "Recommendation API",
            "`GET /api/recommendations`, shipped catalog, embedded Redis",
            f"miss p50/p99 {miss['p50_ms']:.0f}/{miss['p99_ms']:.0f} ms; hit p50/p99 "
            f"{hit['p50_ms']:.0f}/{hit['p99_ms']:.0f} ms",
            "cache miss is the baseline",
            f"{conc['requests_per_second']:.0f} req/s with {conc['concurrency']} clients, hit rate "
            f"{d['cache']['hit_rate']:.2f}{_load_note(d.get('machine'))}",
            "`bench/recs_api_load.py`",
        )
    ]


def _gib(size: int) -> str:
    return f"{size / 2**30:.2f} GiB"


RECS_SCALE_RANKERS = {
    "ensemble": "ranked with the sequence ensemble (untrained weights)",
    "none": "ranked without a sequence model",
}


def recs_scale(d: dict[str, Any]) -> list[Row]:
    data, exact, approx, goal = d["data"], d["exact"], d["approximate"], d["goal"]
    machine, encoder = d["machine"], d["encoder_per_request"]
    lists = approx["index"]

    def api(mode: dict[str, Any]) -> str:
        recs, similar = mode["api"]["recommendations"], mode["api"]["similar"]
        return (
            f"recommendations p50/p99 {recs['p50_ms']:.0f}/{recs['p99_ms']:.0f} ms, similar "
            f"{similar['p50_ms']:.0f}/{similar['p99_ms']:.0f} ms"
        )

    load = machine["load_1m_during_run"]
    return [
        (
            f"Recommendation API at {data['items']:,} items, "
            f"{RECS_SCALE_RANKERS[d.get('sequence', 'none')]} (FAISS IVF against exact)",
            f"{data['description']}; seed {data['seed']}; {data['users']:,} users, "
            f"{data['events']:,} events; cosine random pair {data['random_pair_cosine_mean']}, "
            f"nearest neighbour {data['nearest_neighbour_cosine_mean']}, 100th "
            f"{data['neighbour_100_cosine_mean']}",
            f"IVF nlist {lists['nlist']}, nprobe {lists['nprobe']}: {api(approx)}; recall@100 "
            f"item queries {approx['recall_at_100']['item']:.3f}, profile queries "
            f"{approx['recall_at_100']['profile']:.3f}; goal p99 ≤ {goal['p99_ms_limit']:.0f} ms "
            f"at recall ≥ {goal['recall_at_100_floor']}: {'met' if goal['met'] else 'missed'}",
            f"exact IndexFlatIP: {api(exact)}; top-10 answers shared with exact: "
            f"recommendations {d['answers_shared_with_exact']['recommendations']:.3f}, similar "
            f"{d['answers_shared_with_exact']['similar']:.3f}",
            f"index build {approx['index_build_seconds']:.0f} s (exact "
            f"{exact['index_build_seconds']:.0f} s); RSS {_gib(approx['rss_bytes_after_build'])}, "
            f"index {_gib(approx['index_bytes'])}; text encoder alone p50/p99 "
            f"{encoder['p50_ms']:.0f}/{encoder['p99_ms']:.0f} ms; {machine['processor']}, "
            f"{machine['cpu_count']} cores, {_gib(machine['memory_bytes'])} RAM, "
            f"{machine['threads_per_request']} thread per request, load during run mean "
            f"{load['mean']}, max {load['max']}",
            "`bench/recs_scale.py`",
        )
    ]


def recs_lock_waits(d: dict[str, Any]) -> list[Row]:
    def waits(rows: dict[str, Any]) -> str:
        return "; ".join(
            f"{name}: {row['longest_wait_ms']:,.0f} ms (took {row['action_seconds']:.0f} s)"
            for name, row in rows.items()
        )

    before = d.get("before")
    return [
        (
            "Recommender: longest request wait during a ranker swap and item edits",
            f"{d['catalog']}; probe: {d['probe']}",
            waits(d["rows"]),
            f"before (commit {before['commit']}, same script, run {before['date'][:10]}): "
            f"{waits(before['rows'])}"
            if before
            else "–",
            f"build {d['build_seconds']:.0f} s{_load_note(d.get('machine'))}",
            "`bench/recs_lock_waits.py`",
        )
    ]


def recs_build_scale(d: dict[str, Any]) -> list[Row]:
    data, build, serving = d["data"], d["build"], d["serving"]
    rss, ms = d["peak_rss_gib"], serving["recommend_ms"]
    fitted = build["combiner_validation_users"]
    trained = build.get("sequence_trained_items")
    softmax = (
        f"; sequence ranker on {trained:,} items, {build['sequence_softmax']} softmax"
        if trained
        else ""
    )
    return [
        (
            "Recommender build (`recs build`: fine-tune, sequence ranker, combiner) and serving "
            "on a large catalog",
            f"synthetic: {data['items']:,} items, {data['users']:,} users, {data['events']:,} "
            f"events (bench/recs_scale's generator, seed {data['seed']}); sequence budget "
            f"{d['settings']['sequence_seconds']:.0f} s, {d['settings']['max_steps']} fine-tune "
            "steps",
            f"build {build['seconds']:.0f} s at peak RSS {rss['process']} GiB (largest child "
            f"{rss['largest_child']} GiB), combiner fitted on {fitted:,} of "
            f"{build['validation_users']:,} validation users{softmax}; recommend p50/p99 "
            f"{ms['p50']}/{ms['p99']} ms ({serving['torch_threads']} torch thread)",
            d.get("before")
            or (
                "before the bounded combiner fit and sparse co-occurrence (2026-12-05, the same "
                "catalog size built by hand): still tuning after 10 min at 13 GB RSS, stopped"
                if data["items"] == 30_000
                else "no earlier build of this size"
            ),
            f"recommender setup {serving['setup_seconds']:.0f} s, {_setup_vectors(serving)}"
            f"{_load_note(d.get('machine'))}",
            "`bench/recs_build_scale.py`",
        )
    ]


def _setup_vectors(serving: dict[str, Any]) -> str:
    embedded = serving.get("vectors_embedded_at_setup")
    if embedded is None:  # runs before the model folder kept the build's vectors
        return "the whole catalog embedded again"
    return f"{embedded:,} vectors embedded (the build's vectors reused)"


def recs_sampled_softmax(d: dict[str, Any]) -> list[Row]:
    rows = {row["variant"]: row for row in d["summary"]}

    def cell(row: dict[str, Any]) -> str:
        low, high = row["ndcg@10_spread"]
        return (
            f"ndcg@10 {_f(row['ndcg@10'], 4)} ({_f(low, 4)}–{_f(high, 4)}), "
            f"{row['seconds_per_epoch']:.1f} s per epoch"
        )

    full = rows.pop("full_softmax")
    return [
        (
            "Recommender: sequence ranker trained on a sampled softmax (catalogs from 20,000 "
            "items), forced on a small catalog",
            f"MovieLens-100k leave-last-out ({d['items']:,} items), all unseen items ranked; "
            f"{d['model']}; seeds {', '.join(map(str, d['seeds']))}; mean (min–max)",
            "; ".join(f"{r['negatives']} sampled negatives: {cell(r)}" for r in rows.values()),
            f"full softmax (same run): {cell(full)}",
            f"wall {d['wall_seconds'] / 60:.0f} min{_load_note(d.get('machine'))}",
            "`bench/recs_sampled_softmax.py`",
        )
    ]


def alerts_quality(d: dict[str, Any]) -> list[Row]:
    names = {
        "fpb_sentiment": "Financial PhraseBank `fpb_dev.csv`",
        "twitter_sentiment": "Twitter financial news sentiment `train.csv`",
        "twitter_topic": "Twitter financial news topic `train.csv`",
    }
    rows: list[Row] = []
    for key, task in d["tasks"].items():
        subsample = (
            f", trained on {task['n_train']} of {task['n_train_available']}"
            if task.get("train_subsampled")
            else ""
        )
        rows.append(
            (
                f"Alerts classifier: {key.replace('_', ' ')}",
                f"{names.get(key, key)}, stratified 80/20, seed 42 (test n={task['n_test']})"
                f"{subsample}",
                f"acc {_f(task['accuracy'])}, macro-F1 {_f(task['macro_f1'])}",
                f"{task['baseline']['name']}: acc {_f(task['baseline']['accuracy'])}, macro-F1 "
                f"{_f(task['baseline']['macro_f1'])}; {task['reference']}",
                f"train {task['train_seconds']:.0f} s{_load_note(d.get('machine'))}",
                "`bench/alerts_quality.py`",
            )
        )
    return rows


def alerts_throughput(d: dict[str, Any]) -> list[Row]:
    consumer = d.get("consumer") or {}
    setup = (
        f", {consumer['prepare_workers']} worker(s) x {consumer['torch_threads']} torch thread(s)"
        if consumer
        else ""
    )
    ratios = d.get("ratio_runs") or [d["ratio_end_to_end_to_raw"]]
    return [
        (
            "Alerts pipeline through Kafka",
            f"{d['messages']} messages of the shipped headlines, batch {d['batch']}{setup}, "
            f"embedded broker and Redis on the same 2 cores, {d['rounds']} rounds",
            f"{d['end_to_end_messages_per_second']:.0f} msg/s end to end = "
            f"{d['ratio_end_to_end_to_raw']:.2f} of raw (rounds {min(ratios):.2f}–"
            f"{max(ratios):.2f}; per CPU-second "
            f"{d.get('cpu_ratio_end_to_end_to_raw', float('nan')):.2f})",
            f"raw batched classifiers {d['raw_classifier_messages_per_second']:.0f} msg/s (the "
            f"faster raw setup, same run); goal ratio ≥ {d['goal_ratio']}",
            f"produce→alert p50/p99 {d['alert_latency_ms']['p50']:.0f}/"
            f"{d['alert_latency_ms']['p99']:.0f} ms",
            "`bench/alerts_throughput.py`",
        )
    ]


def reliability(d: dict[str, Any]) -> list[Row]:
    probes = d["probes"]
    total = {k: sum(p[k] for p in probes) for k in ("tried", "failed", "lost", "duplicated")}
    seconds = d.get("seconds")
    return [
        (
            "Reliability under faults (loopback)",
            f"{len(probes)} probes: consumer SIGKILL x3, broker restart, 30 kinds of malformed "
            "Kafka messages, Redis outage under chat/recs traffic, fuzzed HTTP (table below)",
            f"failed {total['failed']}, lost {total['lost']}, duplicated {total['duplicated']} "
            f"of {total['tried']} tried",
            "issue 12's table before the fixes: crash loops, 500s, lost events",
            f"{seconds:.0f} s" if seconds else "–",
            "`bench/reliability.py`",
        )
    ]


SECTIONS: list[tuple[str, Callable[[dict[str, Any]], list[Row]]]] = [
    ("classifier_fpb", classifier_fpb),
    ("classifier_fpb_random_batches", classifier_fpb),
    ("classifier_fpb_cuda", classifier_fpb),
    ("classifier_recipe", classifier_recipe),
    ("classifier_recipe_twitter_sentiment", classifier_recipe),
    ("classifier_recipe_twitter_topic", classifier_recipe),
    ("classifier_recipe_fpb_cuda", classifier_recipe),
    ("classifier_recipe_twitter_sentiment_cuda", classifier_recipe),
    ("classifier_recipe_twitter_topic_cuda", classifier_recipe),
    ("classifier_mpnet_fpb_cuda", classifier_base_fine_tune),
    ("classifier_mpnet_twitter_sentiment_cuda", classifier_base_fine_tune),
    ("classifier_mpnet_twitter_topic_cuda", classifier_base_fine_tune),
    ("classifier_distill", classifier_distill),
    ("classifier_small_data", classifier_small_data),
    ("classifier_small_data_mpnet", classifier_small_data),
    ("classifier_small_data_steps60", classifier_small_data),
    ("classifier_small_data_mpnet_steps60", classifier_small_data),
    ("classifier_multitask_speed", classifier_multitask_speed),
    ("classifier_multitask", classifier_multitask),
    ("classifier_multitask_k16", classifier_multitask),
    ("classifier_multitask_mpnet_cuda", classifier_multitask),
    ("classifier_bases", classifier_bases),
    ("embedder_speed", embedder_speed),
    ("embedder_speed_cuda", embedder_speed_cuda),
    ("alerts_quality", alerts_quality),
    ("alerts_throughput", alerts_throughput),
    ("qa_faq", qa_faq),
    ("qa_faq_banking77", qa_faq),
    ("qa_api_load", qa_api_load),
    ("recs_movielens", recs_movielens),
    ("recs_cold_start", recs_cold_start),
    ("recs_served", recs_served),
    ("recs_api_load", recs_api_load),
    ("recs_scale", recs_scale),
    ("recs_scale_no_sequence", recs_scale),
    ("recs_lock_waits", recs_lock_waits),
    ("recs_build_scale", recs_build_scale),
    ("recs_build_scale_100k", recs_build_scale),
    ("recs_sampled_softmax", recs_sampled_softmax),
    ("reliability", reliability),
]


def table() -> str:
    """The Markdown table of every result file present."""
    lines = [HEADER]
    for name, render in SECTIONS:
        data = _load(name)
        if data is None:
            continue
        for row in render(data):
            lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--print", action="store_true", help="print the table, change nothing")
    args = parser.parse_args()
    text = table()
    if args.print:
        print(text)
        return
    readme = README.read_text()
    head, _, rest = readme.partition(START)
    _, _, tail = rest.partition(END)
    intro = (
        "Measured on the 2-core development machine (CPU only) unless noted; each script writes "
        "`bench/results/<name>.json` with the machine, date and command, and "
        "`python -m bench.report` rebuilds this table from those files."
    )
    README.write_text(f"{head}{START}\n{intro}\n\n{text}\n{END}{tail}")
    print(f"updated {README}")


if __name__ == "__main__":
    main()
