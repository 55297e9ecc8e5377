"""Building the report: matplotlib PNGs, then one HTML page that embeds them (base64), so it travels alone.

Read-only towards the run: the page and PNGs go to `reports/<run name>/` (not into the run folder), MLflow is only
read (the champion, the promotion decisions) unless `log_mlflow` asks to log the page as artifacts."""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path

from azr_core.report import data
from azr_core.report.registry import Registry, read_registry

TYPES = ("deduction", "abduction", "induction")


@dataclass
class Figure:
    name: str
    title: str
    path: Path


def _plot(out: Path, name: str, title: str, panels: list[tuple[str, data.Series]], ylabel: str = "",
          mark: dict[str, int] | None = None) -> Figure | None:  # fmt: skip
    """One PNG with a panel per (subtitle, series); None when every series is empty."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(t, s) for t, s in panels if s]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.4), squeeze=False)
    for ax, (subtitle, series) in zip(axes[0], panels, strict=True):
        for label, points in sorted(series.items()):
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o", markersize=3, label=label)
        ax.set_title(subtitle, fontsize=10)
        ax.set_xlabel("iteration")
        _integer_ticks(ax)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if len(series) > 1 or mark:
            ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    path = out / f"{name}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Figure(name, title, path)


def _integer_ticks(ax) -> None:
    """Whole numbers on the x axis: iterations and versions are counts (matplotlib puts 1.2, 1.4 on short runs)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _strip(series: data.Series, prefix: str) -> data.Series:
    return {k.removeprefix(prefix): v for k, v in series.items()}


def _eval_figure(out: Path, scores: dict[str, list[tuple[int, float, int]]], champion: int | None) -> Figure | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not scores:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for bench, rows in sorted(scores.items()):
        xs = [v for v, _, _ in rows]
        ax.plot(xs, [a for _, a, _ in rows], marker="o", label=f"{bench} (n={rows[-1][2]})")
    if champion is not None:
        ax.axvline(champion, color="goldenrod", linestyle="--", label=f"champion: v{champion}")
    ax.set_xlabel("model version")
    _integer_ticks(ax)
    ax.set_ylabel("accuracy (pass@1)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("Evaluation scores per registered version")
    fig.tight_layout()
    path = out / "eval_scores.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Figure("eval_scores", "Evaluation scores per version", path)


def build_report(run_dir: str | Path, out_dir: str | Path | None = None, *, champion: int | None = None,
                 log_mlflow: bool = False, tracking_uri: str | None = None) -> Path:  # fmt: skip
    """Write `out_dir/index.html` and the PNGs beside it (default out_dir: reports/<run folder name>, outside the
    run folder: a report reads a run, it does not change it); returns the page.

    `champion`: the version to mark (default: the registry's `champion` alias, when the tracking store is
    reachable). The promotion decisions of the run's versions come from the registry. With `log_mlflow`, the PNGs and
    the page go to the run's MLflow run as artifacts (the run's status and tags are left as they are).
    """
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir else default_out_dir(run_dir)
    con = data.open_run(run_dir)  # first: a wrong folder is refused before anything is created in it
    out.mkdir(parents=True, exist_ok=True)
    ms = data.metric_series
    figs: list[Figure | None] = [
        _plot(out, "validity", "Proposal validity and format", [
            ("valid proposals", _strip(ms(con, "valid_rate/%"), "valid_rate/")),
            ("proposer format", _strip(ms(con, "format_rate/propose/%"), "format_rate/propose/")),
        ], "share"),
        _plot(out, "rejections", "Rejection reasons of invalid proposals", [
            (t, _strip(ms(con, f"invalid/{t}/%"), f"invalid/{t}/")) for t in TYPES
        ], "proposals"),
        _plot(out, "solver", "Solver accuracy and format", [
            ("accuracy", _strip(ms(con, "solve_accuracy/%"), "solve_accuracy/")),
            ("solver format", _strip(ms(con, "format_rate/solve/%"), "format_rate/solve/")),
        ], "share"),
        _plot(out, "rewards", "Mean reward per (role, type) group", [
            ("reward", _strip(ms(con, "reward_mean/%"), "reward_mean/"))], "reward"),
        _plot(out, "loss", "Training", [("loss", _strip(ms(con, "train/%loss%"), "train/")),
                                        ("other", _strip(ms(con, "train/grad%"), "train/"))]),
        _plot(out, "seconds", "Seconds per stage", [("stage", _strip(ms(con, "seconds/%"), "seconds/"))], "s"),
        _plot(out, "task_mix", "Task-type mix (tasks added per iteration)", [("tasks", data.task_mix(con))], "tasks"),
    ]  # fmt: skip
    figs += _proposer_figures(out, con)
    length, nodes = data.program_stats(con)
    figs.append(_plot(out, "programs", "Proposed programs", [("length (characters)", length),
                                                             ("complexity (AST nodes)", nodes)]))  # fmt: skip
    scores = data.eval_scores(con)
    registry = read_registry(run_dir, tracking_uri)
    if champion is None:
        champion = registry.champion
    figs.append(_eval_figure(out, scores, champion))
    made = [f for f in figs if f is not None]
    page = out / "index.html"
    page.write_text(_html(run_dir, made, scores, champion, registry, data.examples(con)), encoding="utf-8")
    if log_mlflow:
        _log(run_dir, out, tracking_uri)
    return page


def _proposer_figures(out: Path, con) -> list[Figure | None]:
    """What the proposer invents (azr_core.algo.proposer_measures): new tasks and programs, the share learnable at
    birth, and the complexity and distance to the references of what it proposes. Absent for runs from before the
    measures."""
    ms = data.metric_series
    return [
        _plot(out, "invention", "What the proposer invents (novel: canonical program + input new to the run)", [
            ("novel tasks", _strip(ms(con, "novel_tasks/%"), "novel_tasks/")),
            ("novel programs (induction: behind novel tasks)", {
                **_strip(ms(con, "novel_programs/%"), "novel_programs/"),
                **{k: v for k, v in _strip(ms(con, "novel_task_programs/%"), "novel_task_programs/").items()
                   if k == "induction"}}),
            ("novel tasks learnable at birth (0 < solve rate < 1)",
             _strip(ms(con, "novel_learnable_share/%"), "novel_learnable_share/")),
        ], "tasks / share"),
        _plot(out, "invented_programs", "The proposed programs: complexity and diversity", [
            ("cognitive complexity (ComplexiPy), novel programs", _strip(ms(con, "complexity/%"), "complexity/")),
            ("Halstead effort, novel programs", _strip(ms(con, "halstead_effort/%"), "halstead_effort/")),
            ("AST edit distance to the references (normalised)",
             _strip(ms(con, "edit_distance_norm/%"), "edit_distance_norm/")),
            ("answer diversity (distinct gold outputs / valid)",
             _strip(ms(con, "answer_diversity/%"), "answer_diversity/")),
        ]),
    ]  # fmt: skip


def default_out_dir(run_dir: Path) -> Path:
    return Path("reports") / run_dir.resolve().name


def _log(run_dir: Path, out: Path, tracking_uri: str | None) -> None:
    """The page and PNGs as artifacts of the run's MLflow run; asked for explicitly (`--mlflow`), and still without
    a Tracker, whose opening would set the run RUNNING."""
    from azr_core.outcome import run_record
    from azr_core.tracking.store import read_client, resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    client = read_client(uri)
    found = run_record(run_dir.resolve(), client, uri) if client is not None else None
    if found is None:
        raise FileNotFoundError(f"{run_dir} has no MLflow run in {uri}: nothing to log the report to")
    client.log_artifacts(found[1], str(out), "report")


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px;color:#222}
img{max-width:100%;border:1px solid #ddd;margin:.5em 0}h2{border-bottom:1px solid #ccc;padding-bottom:.2em}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:12px;white-space:pre-wrap}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}
.ok{color:#070}.bad{color:#a00}.champ{background:#fff3c4}"""

# A real browser decodes every image; the page records that it did (a test reads it from the rendered DOM).
_CHECK = """<script>window.addEventListener('load',function(){var i=document.images,ok=0;
for(var k=0;k<i.length;k++){if(i[k].complete&&i[k].naturalWidth>0)ok++;}
document.body.setAttribute('data-images-ok',ok+'/'+i.length);});</script>"""


def _html(run_dir: Path, figs: list[Figure], scores, champion, registry: Registry, examples) -> str:
    e = html.escape
    head = f"<title>AZR report: {e(run_dir.name)}</title><style>{_CSS}</style>{_CHECK}"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'>{head}</head><body>",
             f"<h1>AZR run <code>{e(str(run_dir))}</code></h1>"]  # fmt: skip
    if not figs:
        parts.append("<p>No committed training iterations or evaluations yet.</p>")
    for f in figs:
        b64 = base64.b64encode(f.path.read_bytes()).decode()
        parts.append(f"<h2>{e(f.title)}</h2><img alt='{e(f.name)}' src='data:image/png;base64,{b64}'>")
    parts += _evaluation_html(scores, champion, registry)
    if examples:
        parts.append("<h2>Example tasks and their rollouts</h2>")
        for ex in examples:
            io = json.dumps({k: ex[k] for k in ("input", "output", "message") if ex[k]}, ensure_ascii=False)
            parts.append(f"<h3>{e(ex['task_type'])} task {e(ex['task_id'][:12])} (iteration {ex['iteration']})</h3>"
                         f"<pre>{e(ex['program'] or '')}</pre><p>{e(io)}</p>")  # fmt: skip
            for r in ex["rollouts"]:
                cls = "ok" if r["correct"] else "bad"
                parts.append(f"<p class={cls}>answer {e(str(r['answer']))}, correct {r['correct']}, reward "
                             f"{r['reward']}</p><pre>{e((r['completion'] or '')[:2000])}</pre>")  # fmt: skip
    parts.append("</body></html>")
    return "\n".join(parts)


def _evaluation_html(scores, champion: int | None, registry: Registry) -> list[str]:
    """The scores per version (the champion marked) and the promotion decisions with their p-values."""
    e = html.escape
    parts = ["<section id='evaluation'><h2>Evaluation and promotion</h2>"]
    mark = f"champion: version {champion}" if champion is not None else "no champion yet"
    parts.append(f"<p id='champion'>{e(mark)}</p>")
    if scores:
        versions = sorted({v for rows in scores.values() for v, _, _ in rows})
        heads = "".join(f"<th class=champ>v{v} (champion)</th>" if v == champion else f"<th>v{v}</th>"
                        for v in versions)  # fmt: skip
        parts.append("<h3>Scores per version (pass@1, latest evaluation)</h3><table id='scores'><tr><th>bench</th>"
                     f"{heads}</tr>")  # fmt: skip
        for bench, rows in sorted(scores.items()):
            by = {v: a for v, a, _ in rows}
            parts.append(f"<tr><th>{e(bench)}</th>" + "".join(
                f"<td>{by[v]:.3f}</td>" if v in by else "<td></td>" for v in versions) + "</tr>")  # fmt: skip
        parts.append("</table>")
    else:
        parts.append("<p>No evaluation in this run folder yet.</p>")
    judged = [d for d in registry.decisions if d["decision"]]
    if judged:
        parts.append(
            "<h3>Promotion decisions</h3><table id='promotions'><tr><th>version</th><th>iteration</th>"
            "<th>decision</th><th>against</th><th>gap</th><th>p-value</th><th>test</th><th>reason</th></tr>"
        )
        for d in judged:
            cls = " class=champ" if champion is not None and d["version"] == str(champion) else ""
            cells = [d["version"], d["iteration"], d["decision"], d["against"] or "-", d["delta"] or "-",
                     d["p_value"] or "-", d["test"], d["reason"]]  # fmt: skip
            parts.append(f"<tr{cls}>" + "".join(f"<td>{e(c)}</td>" for c in cells) + "</tr>")
        parts.append("</table>")
    elif registry.decisions:
        parts.append("<p>The run's versions have no promotion decision yet.</p>")
    if registry.note:
        parts.append(f"<p class=note>Registry: {e(registry.note)}</p>")
    parts.append("</section>")
    return parts
