"""The ``mla`` command (also ``python -m mla``): one subcommand per pipeline step.

Every subcommand takes the config file and explicit paths or a job id from the grid, so the
Snakemake rules stay thin. Heavy imports happen inside the subcommands.

Bad input (a config, a name, a path, a file) ends in one line on stderr, ``mla <command>: error:
...``, and exit status 1; ``mla --debug <command>`` or ``MLA_DEBUG=1`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mla import config as config_mod, grid
from mla.errors import UserError


def _cfg(args: argparse.Namespace) -> dict:
    return config_mod.load(args.config, args.set or [])


def cmd_generate(args: argparse.Namespace) -> None:
    from mla.data.builtin import generate

    cfg = _cfg(args)
    if args.dataset not in cfg["data"]:
        raise config_mod.ConfigError(f"config key data.{args.dataset}: no generator parameters")
    generate(args.dataset, cfg["data"][args.dataset], args.out)


def cmd_features(args: argparse.Namespace) -> None:
    from mla.features.extract import build_features

    cfg = _cfg(args)
    build_features(args.dataset, args.raw, args.out, cfg["features"], cfg["split_seed"], cfg["val_fraction"])


def cmd_prepare(args: argparse.Namespace) -> None:
    from mla.data.prepare import prepare

    cfg = _cfg(args)
    options = dict((cfg.get("prepare") or {}).get(args.dataset) or {})
    if args.vocab:
        options["text"] = {**options.get("text", {}), "vocab": args.vocab}
    if args.allow_missing:
        options["allow_missing"] = args.allow_missing
    if args.workers:
        options["workers"] = args.workers
    prepare(args.dataset, args.raw, args.splits, args.out, options,
            split_seed=cfg["split_seed"], val_fraction=cfg["val_fraction"])


def cmd_train(args: argparse.Namespace) -> None:
    from mla.train import run_job

    for job_id in args.job:  # every id checked before any job starts (or anything is written)
        grid.check_job_id(job_id)
    cfg = _cfg(args)
    for job_id in args.job:
        grid.job_by_id(cfg, job_id)
    for job_id in args.job:
        run_job(cfg, job_id)


def cmd_analyze(args: argparse.Namespace) -> None:
    from mla.analysis.embed import analyse_dataset

    cfg = _cfg(args)
    if args.dataset not in cfg["analysis"]["datasets"]:
        raise config_mod.ConfigError(f"--dataset {args.dataset!r}: not in analysis.datasets of {args.config} "
                                     f"({', '.join(cfg['analysis']['datasets']) or 'none'})")
    analyse_dataset(cfg, args.dataset)


def cmd_report(args: argparse.Namespace) -> None:
    from mla.report.build import build_report

    cfg = _cfg(args)
    build_report(cfg, args.out or grid.report_dir(cfg))


def cmd_readme(args: argparse.Namespace) -> None:
    from mla.report.readme import render_readme

    text = render_readme(".", args.name)
    readme = Path("README.md")
    if args.check:
        if text != readme.read_text(encoding="utf-8"):
            raise SystemExit("mla readme: README.md's generated blocks differ from reports/"
                             f"{args.name}/readme.md or bench/results/pipeline.json; run: python -m mla readme")
        return
    readme.write_text(text, encoding="utf-8")


def cmd_jobs(args: argparse.Namespace) -> None:
    for job in grid.jobs(_cfg(args)):
        print(job.id)


def cmd_acquire(args: argparse.Namespace) -> None:
    from mla.acquire.command import run

    run(args)


def cmd_convert_weights(args: argparse.Namespace) -> None:
    import json

    from mla.weights.convert import convert_file

    options = json.loads(args.options) if args.options else {}
    report = convert_file(args.kind, args.src, args.out, options, args.released_patch_order, args.sha256)
    print(f"{args.out}: {report['parameters']} tensors from {args.src} ({report['kind']}, {report['format']}); "
          f"{len(report['dropped'])} source entries unused (see {args.out}.json)")


def cmd_score_released(args: argparse.Namespace) -> None:
    from mla.score_released import score

    m = score(_cfg(args), args.dataset, args.checkpoint, args.out)
    fused = ", ".join(f"{k} {v}" for k, v in sorted(m["fusion"].items()))
    alone = ", ".join(f"{k} {m['test'][k]}" for k in m["modalities"])
    print(f"{args.dataset}: {m['test_count']} test examples; multi ({fused}); {alone} -> {args.out}/metrics.json")


def cmd_fixture(args: argparse.Namespace) -> None:
    from mla.fixtures import write_fixture

    out = write_fixture(args.dataset, args.out, args.config)
    print(f"{out}: a {args.dataset} fixture copy: raw/ (the dataset's layout), splits/ (lists in the official "
          f"format, not the official lists), sources.yaml (pins those lists), train.yaml (a tiny training config)"
          f"; docs/try-real-data.md walks acquire -> prepare -> train on it")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mla", description=__doc__.splitlines()[0])
    p.add_argument("--debug", action="store_true", help="show the traceback of an error (also MLA_DEBUG=1)")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, func, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("--config", default="config/config.yaml", help="experiment config (YAML)")
        sp.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
        sp.set_defaults(func=func)
        return sp

    sp = add("generate", cmd_generate, "write a built-in dataset's raw media")
    sp.add_argument("--dataset", required=True)
    sp.add_argument("--out", required=True)
    sp = add("features", cmd_features, "decode raw media into the feature store")
    sp.add_argument("--dataset", required=True)
    sp.add_argument("--raw", required=True)
    sp.add_argument("--out", required=True)
    sp = add("prepare", cmd_prepare, "decode a real dataset (official lists + raw files) into the feature store")
    sp.add_argument("--dataset", required=True, help="cremad, ks, food101, mvsa or iemocap")
    sp.add_argument("--raw", required=True, help="the raw files in the dataset's own layout")
    sp.add_argument("--splits", required=True, help="directory of the official split lists (mla acquire --splits)")
    sp.add_argument("--out", required=True, help="feature store directory (replaced atomically)")
    sp.add_argument("--vocab", default=None, help="BERT vocab.txt, or 'build' (overrides prepare.<dataset>.text.vocab)")
    sp.add_argument("--allow-missing", default=None, metavar="FILE",
                    help="ks: ids of unavailable clips to exclude (overrides prepare.ks.allow_missing)")
    sp.add_argument("--workers", type=int, default=None, help="decoding processes (output does not depend on it)")
    sp = add("train", cmd_train, "train every seed of one or more grid jobs")
    sp.add_argument("--job", required=True, action="append", help="<phase>/<dataset>/<tag> (see `mla jobs`)")
    sp = add("analyze", cmd_analyze, "embeddings, modality gap and t-SNE of one dataset")
    sp.add_argument("--dataset", required=True)
    sp = add("report", cmd_report, "tables, figures and report.html")
    sp.add_argument("--out", default=None)
    add("jobs", cmd_jobs, "list the grid's job ids")
    sp = sub.add_parser("readme", help="copy the run's results (reports/<name>/readme.md) and bench/pipeline.py's "
                        "figures (bench/results/pipeline.json) into README.md's generated blocks")
    sp.add_argument("--name", default="builtin", help="the config name whose report the README shows")
    sp.add_argument("--check", action="store_true", help="only check that README.md is up to date (exit 1 if not)")
    sp.set_defaults(func=cmd_readme)
    sp = add("fixture", cmd_fixture, "write a real dataset's small fixture copy in its real layout (try the "
             "real-data steps without the data; see docs/try-real-data.md)")
    sp.add_argument("--dataset", required=True, help="cremad, ks, food101, mvsa or iemocap")
    sp.add_argument("--out", required=True, help="a new directory")
    sp.set_defaults(config="config/paper.yaml")
    from mla.acquire.command import add_arguments as acquire_arguments

    acquire_arguments(add("acquire", cmd_acquire, "fetch split lists, download a dataset or verify a user copy"))
    sp = sub.add_parser("convert-weights", help="third-party or released checkpoint -> our encoders' state dict "
                        "(read without executing code; see mla/weights/convert.py)")
    sp.add_argument("--kind", required=True, choices=("m3ae", "cavmae", "released"))
    sp.add_argument("--src", required=True, help="M3AE parameter pickle or .pth, CAV-MAE .pth, or [C] MLA .pth")
    sp.add_argument("--out", required=True, help="output .pt (torch.save of a dict of tensors) and <out>.json")
    sp.add_argument("--options", default=None, help='sizes per encoder as JSON, e.g. {"m3ae": {"depth": 12}}')
    sp.add_argument("--sha256", default=None, help="the source's expected sha256: another file is an error")
    sp.add_argument("--released-patch-order", action="store_true",
                    help="m3ae from Flax: keep the patch-row order as [C]'s conversion does (default: permute)")
    sp.set_defaults(func=cmd_convert_weights)
    sp = add("score-released", cmd_score_released, "score an authors' released MLA checkpoint (converted by "
             "convert-weights --kind released) on the dataset's official test split")
    sp.add_argument("--dataset", required=True)
    sp.add_argument("--checkpoint", required=True, help="the converted .pt (its .pt.json report beside it)")
    sp.add_argument("--out", required=True, help="directory for metrics.json and provenance.json")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; an error the user can fix is one line on stderr and exit status 1."""
    args = parser().parse_args(argv)
    debug = args.debug or os.environ.get("MLA_DEBUG", "") not in ("", "0")
    try:
        args.func(args)
    except (UserError, ValueError, OSError, RuntimeError) as exc:  # OSError: disk full, unwritable path
        if debug:
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__  # one line, whatever the message holds
        print(f"mla {args.command}: error: {message}", file=sys.stderr)
        return 1
    return 0
