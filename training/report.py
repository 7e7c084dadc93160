"""Plots (matplotlib, Agg backend) and the Markdown report of ``kwsd-train evaluate``."""

from __future__ import annotations

import json
from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_history(history: dict, path, marks=()):
    """Training curves (loss and AUC, training vs validation) as a PNG; ``marks``: epoch
    counts of the phases (a vertical line where hard-negative mining started)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in zip(axes, ("loss", "auc")):
        at = 0
        for m in marks:
            at += m
            ax.axvline(at + 0.5, color="grey", linestyle=":", label="hard negatives added")
        for prefix, style in (("", "-"), ("val_", "--")):
            if prefix + key in history:
                vals = history[prefix + key]
                ax.plot(range(1, len(vals) + 1), vals, style,
                        label=("validation " if prefix else "training ") + key)
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_det(curves: dict, path, title="DET curve (held-out split)", marks: dict | None = None):
    """False-reject rate vs false accepts per hour, one line per model; ``marks`` maps a
    model name to the threshold to highlight (its calibrated one)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    for name, rows in curves.items():
        pts = [(r["false_accepts_per_hour"], r["stream_false_reject_rate"]
                if r["stream_false_reject_rate"] is not None else r["clip_false_reject_rate"],
                r["threshold"]) for r in rows]
        pts = [p for p in pts if p[0] is not None and p[1] is not None]
        if not pts:
            continue
        xs = [max(p[0], 0.05) for p in pts]       # 0 FA/h drawn at the axis floor
        ys = [p[1] * 100 for p in pts]
        line, = ax.plot(xs, ys, "-o", markersize=2, label=name)
        if marks and name in marks:
            for x, y, t in zip(xs, ys, [p[2] for p in pts]):
                if abs(t - marks[name]) < 1e-9:
                    ax.plot([x], [y], "s", color=line.get_color(), markersize=8)
                    ax.annotate(f"t={t:g}", (x, y), textcoords="offset points", xytext=(5, 5))
    ax.set_xscale("log")
    ax.set_xlabel("false accepts per hour (long held-out audio; 0 drawn at 0.05)")
    ax.set_ylabel("false rejects (% of held-out keyword clips, streamed)")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _fmt(v, pct=False):
    if v is None:
        return "—"
    if pct:
        return f"{100 * v:.1f}%"
    return f"{v:g}" if isinstance(v, (int, float)) else str(v)


def markdown(report: dict) -> str:
    """The Markdown text of an evaluation report (see :func:`training.evaluate.evaluate_models`)."""
    lines = ["# kwsd-train evaluation report", ""]
    lines += [f"- date: {report['date']}", f"- command: `{report['command']}`",
              f"- work folder: `{report['workdir']}`",
              f"- targets: <= {report['targets']['fa_per_hour']} false accepts/hour, "
              f"<= {_fmt(report['targets']['clip_fpr'], True)} clip false-positive rate, "
              f"clip recall kept >= {_fmt(report['targets'].get('min_recall'), True)}", ""]
    split = report.get("split")
    if split:
        lines += ["## Data (windows per split)", "", "| split | keyword clips | other clips | "
                  "long files | noise segments | keyword speakers |", "|---|---|---|---|---|---|"]
        for name, c in split.items():
            lines.append(f"| {name} | {c['keyword']} | {c['word']} | {c['long']} | {c['noise']} "
                         f"| {c['keyword_speakers']} |")
        lines.append("")
    lines += ["## Summary (testing split, calibrated threshold)", "",
              "| model | threshold | clip recall | clip FPR | precision | ROC AUC | stream recall "
              "| FA/hour | hours |", "|---|---|---|---|---|---|---|---|---|"]
    for name, m in report["models"].items():
        t = m.get("testing", {}).get("calibrated") or m.get("validation", {}).get("calibrated")
        if not t:
            continue
        s = t.get("stream", {})
        lines.append(f"| {name} | {t['threshold']:g} | {_fmt(t['clip']['recall'], True)} | "
                     f"{_fmt(t['clip']['false_positive_rate'], True)} | "
                     f"{_fmt(t['clip']['precision'], True)} | "
                     f"{_fmt(m.get('testing', {}).get('roc_auc'))} | "
                     f"{_fmt(s.get('recall'), True)} | "
                     f"{_fmt(t['long']['false_accepts_per_hour'])} | {t['long']['hours']} |")
    lines.append("")
    for name, m in report["models"].items():
        lines += [f"## {name}", "", f"- file: `{m['path']}` ({m['bytes']} bytes, {m['kind']})",
                  f"- its own defaults: {json.dumps(m['defaults'])}",
                  f"- calibrated on validation: threshold {m['calibration']['threshold']:g} "
                  f"(targets met: {m['calibration']['met_targets']})", ""]
        for split_name in ("validation", "testing"):
            sm = m.get(split_name)
            if not sm:
                continue
            lines += [f"### {split_name}", "", f"ROC AUC (clip max score): {_fmt(sm['roc_auc'])}",
                      "", "| setting | threshold | clip recall | clip FPR | stream recall | "
                      "stream FP (other words) | FA | FA/hour |", "|---|---|---|---|---|---|---|---|"]
            for label in ("defaults", "calibrated"):
                r = sm[label]
                s = r.get("stream", {})
                lines.append(f"| {label} | {r['threshold']:g} | {_fmt(r['clip']['recall'], True)} | "
                             f"{_fmt(r['clip']['false_positive_rate'], True)} | "
                             f"{_fmt(s.get('recall'), True)} | "
                             f"{_fmt(s.get('other_false_positive_rate'), True)} | "
                             f"{r['long']['false_accepts']} | "
                             f"{_fmt(r['long']['false_accepts_per_hour'])} |")
            r = sm["calibrated"]
            worst = {w: v for w, v in r["clip"]["per_word_false_positive_rate"].items() if v}
            lines += ["", f"Per-word clip false-positive rates (non-zero, calibrated): "
                          f"{json.dumps(worst) if worst else 'none'}",
                      f"False accepts by source (calibrated): "
                      f"{json.dumps(r['long']['false_accepts_by_source'])}", ""]
    for name, m in report["models"].items():
        held = m.get("heldout_long")
        if not held:
            continue
        lines += [f"## {name}: false accepts on the held-out long audio", "",
                  f"{held['hours']} h of real recordings never trained on "
                  f"({' + '.join(held['splits'])} splits), 95% exact Poisson intervals.", "",
                  "| by | name | hours | FA (defaults) | FA/h (defaults) | 95% CI | "
                  "FA (calibrated) | FA/h (calibrated) | 95% CI |", "|---|---|---|---|---|---|---|---|---|"]
        for kind in ("all", "language", "source"):
            for key, d in held["defaults"][kind].items():
                c = held["calibrated"][kind][key]
                lines.append(f"| {kind} | {key} | {d['hours']} | {d['false_accepts']} | "
                             f"{_fmt(d['per_hour'])} | {_fmt(d['ci95'][0])}-{_fmt(d['ci95'][1])} | "
                             f"{c['false_accepts']} | {_fmt(c['per_hour'])} | "
                             f"{_fmt(c['ci95'][0])}-{_fmt(c['ci95'][1])} |")
        lines += ["", f"Top false accepts: the highest-scoring detections at a threshold of "
                      f"0.3 (or the model's own, if lower), so what nearly fires shows too; "
                      f"snippets in `false_accepts/`, 2 s before to 0.5 s after the decision:",
                  "", "| # | score | fires at defaults | time (s) | language | file | snippet |",
                  "|---|---|---|---|---|---|---|"]
        for k, fa in enumerate(held["top_false_accepts"], 1):
            lines.append(f"| {k} | {fa['score']:.3f} | {'yes' if fa.get('fires_at_defaults') else 'no'} "
                         f"| {fa['time']} | {fa['language']} | "
                         f"`{fa['file']}` | {fa.get('snippet') or '—'} |")
        cv = m.get("crossval")
        if cv:
            r = cv["row"]
            s_ = cv["summary"]
            lines += ["", f"Cross-validated ({cv['folds']} speaker folds x {len(cv['seeds'])} "
                          f"seed(s)) at threshold {cv['threshold']:g}: recall "
                          f"{_fmt(r['recall'], True)}, other-word false positives "
                          f"{_fmt(r['clip_false_positive_rate'], True)}, pooled ROC AUC "
                          f"{_fmt(cv['pooled_roc_auc'])}; per fold recall "
                          f"{json.dumps(s_.get('recall'))}", ""]
        syn = m.get("synthetic_speech")
        if syn:
            lines += ["", f"Synthetic running speech ({syn['files']} files of `kwsd-train synth` "
                          f"long speech): a development signal only. Synthetic voices say "
                          f"nothing certain about real speech; these figures are never a claim "
                          f"and never calibrate."
                          + (f" Left out, missing or unreadable: {len(syn['skipped'])} file(s) "
                             f"(named on stderr)." if syn.get("skipped") else ""), "",
                      "| language | hours | FA (defaults) | FA/h (defaults) | FA (calibrated) | "
                      "FA/h (calibrated) |", "|---|---|---|---|---|---|"]
            for key, d in [("all", syn["defaults"]["all"].get("all"))] + sorted(
                    syn["defaults"]["language"].items(), key=lambda kv: -kv[1]["hours"]):
                c = (syn["calibrated"]["all"].get("all") if key == "all"
                     else syn["calibrated"]["language"][key])
                lines.append(f"| {key} | {d['hours']} | {d['false_accepts']} | "
                             f"{_fmt(d['per_hour'])} | {c['false_accepts']} | "
                             f"{_fmt(c['per_hour'])} |")
        lines += ["", "Threshold table (`det_table`: threshold, FA/h on held-out long audio, "
                      "recall):", "", "```", json.dumps(held["det_table"]["rows"]), "```", ""]
    if report.get("clip_scores_csv"):
        lines += [f"Every held-out clip's highest score under each model: "
                  f"`{Path(report['clip_scores_csv']).name}`.", ""]
    if report.get("det_png"):
        lines += ["## DET curve", "", f"![DET curve]({Path(report['det_png']).name})", ""]
    lines += ["## Configuration", "", "```json", json.dumps(report.get("config", {}), indent=1),
              "```", ""]
    return "\n".join(lines)
