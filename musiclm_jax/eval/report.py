"""eval.html: one self-contained page of musiclm-eval's report (tables, and plots as base64 PNG).

  write_html("runs/demo/eval/eval.html", report)   # report: what eval.suite.run_suite returns
  print(headline(report))                         # the metric table as text
"""
import base64
import html
import io
import math

from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

from musiclm_jax import html_page
from musiclm_jax.eval import fad

_STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 80em; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #ccc; padding: 0.3em 0.8em; text-align: right; }
td:first-child, th:first-child { text-align: left; }
.note { color: #555; font-size: 90%; }
img { max-width: 100%; }
"""


def _columns(report: dict) -> list[str]:
  return list(report["sets"])


def _format(value) -> str:
  return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4g}"


def _direction(metric: dict) -> str:
  if metric["higher_is_better"] is None:
    return "closer to real is better"
  return "higher is better" if metric["higher_is_better"] else "lower is better"


def _p_value_lines(report: dict) -> list[str]:
  return [f"{name}: p = {_format(test['p_value'])} that true prompts score no higher than shuffled "
          f"({test['test']} permutation test, {' vs '.join(map(str, test['clips']))} clips)"
          for name, test in report.get("p_values", {}).items()]


def _memorization_lines(report: dict) -> list[str]:
  """The memorization study (eval/memorization.py) as text: one line per prompt length T."""
  study = report.get("memorization")
  if not study:
    return []
  lines = [f"memorization, {study['examples']} training examples continued greedily "
           f"(approximate: transport cost below the {100 * study['false_positive_rate']:g} % "
           f"false-positive threshold of {_format(max(study['negative_pairs'], default=0))} "
           f"negative pairs):"]
  for i, seconds in enumerate(study["prompt_seconds"]):
    lines.append(f"  T = {seconds:g} s, {study['continuation_seconds'][i]:g} s continued: exact "
                 f"{study['exact_match'][i]:.3f}  approximate {study['approximate_match'][i]:.3f}  "
                 f"tokens agreeing {study['token_agreement'][i]:.3f}")
  lines += [f"  T = {seconds} s: not run, {reason}" for seconds, reason in study["skipped"].items()]
  return lines


def _per_window_lines(report: dict) -> list[str]:
  """Per-window MCC and FAD against window position in the long generations, as text."""
  windows = report.get("per_window")
  if not windows:
    return []
  lines = [f"per {windows['window_seconds']:g} s window of the {windows['clips']} generated clip(s) "
           f"longer than that (FAD needs {fad.MIN_CLIPS} musicnn rows per position):"]
  for i, start in enumerate(windows["start_s"]):
    lines.append(f"  from {start:g} s ({windows['windows'][i]} window(s), "
                 f"{windows['fad_rows'][i]} musicnn rows): MCC {_format(windows['MCC'][i])}  "
                 f"FAD_musicnn {_format(windows['FAD_musicnn'][i])}")
  return lines


def _melody_lines(report: dict) -> list[str]:
  """Melody adherence (eval/melody.py) of the clips generated with a melody_from input."""
  adherence = report.get("melody_adherence")
  if not adherence:
    return []
  return [f"melody adherence (the melody's notes among the music's "
          f"{adherence['top_pitch_classes']} strongest pitch classes at the best transposition, "
          f"{adherence['num_pairs']} clips): own melody {adherence['matched']:.3f}, "
          f"another clip's melody {adherence['mismatched']:.3f} (higher is better; own above "
          f"another's is adherence)"]


def _joins_figure(figures: dict | None) -> str:
  return "no joins" if figures is None else f"{figures['ratio']:.2f} (p {figures['p_value']:.2g})"


def _joins_lines(report: dict) -> list[str]:
  """Window joins (eval/joins.py): per stage, flux at the generated clips' joins over flux
  elsewhere and the real clips' at the same join times."""
  joins = report.get("joins")
  if not joins:
    return []
  return ["window joins (spectral flux at a stage's joins / elsewhere, 1: no jump): " + "; ".join(
              f"{stage} ratio {_joins_figure(pair['generated'])}, real {_joins_figure(pair['real'])}"
              for stage, pair in joins.items())]


def _story_cell(figures: dict | str) -> str:
  if isinstance(figures, str):
    return figures
  skipped = "".join(f", {n} skipped: {why}" for why, n in figures["skipped"].items())
  return (f"own segment {figures['own_segment_accuracy']:.2f} / other segment "
          f"{figures['other_segment_accuracy']:.2f} (p {_format(figures['p_value'])}, "
          f"{figures['stories']} stories, {figures['windows']} windows{skipped})")


def _story_lines(report: dict) -> list[str]:
  """Story adherence (eval/story.py): the judge's genre per window against the segments."""
  story = report.get("story")
  if not story:
    return []
  return [f"story (judge's genre per {story['generated']['window_seconds']:.3g} s window inside "
          f"a segment; higher own than other is adherence): generated "
          f"{_story_cell(story['generated'])}; real {_story_cell(story['real'])}"]


def _token_probe_cell(figures: dict) -> str:
  shuffled = (f" / shuffled prompts {figures['shuffled_prompts']:.2f}"
              if "shuffled_prompts" in figures else "")
  return (f"{figures['metric']} {figures['score']:.2f}{shuffled} (majority "
          f"{figures['baseline']:.2f}, p {_format(figures['p_value'])})")


def _token_probe_lines(report: dict) -> list[str]:
  """The token probes (eval/token_probes.py): one line per representation and source."""
  rows = report.get("token_probes")
  if not rows:
    return []
  return ["token probes (label judge heads on bags of tokens, fitted on the cache's training "
          "clips; p: shuffled labels for real, true > shuffled prompts for generated):"] + [
      f"  {row['representation']} {row['source']} ({row['clips']} clips): "
      + "  ".join(_token_probe_cell(row[head]) for head in ("genre", "instruments", "mood"))
      for row in rows]


def _confusion_lines(report: dict) -> list[str]:
  """Per set, the genre the judge predicts most and for how many of its paired clips: the
  one number that tells a judge collapsing onto one class (noise-like audio) from one that
  hears genres but the wrong ones."""
  lines = []
  for name, confusion in (report.get("judge_genre_confusion") or {}).items():
    predicted = [sum(column) for column in zip(*confusion["counts"])]
    top = max(range(len(predicted)), key=predicted.__getitem__)
    lines.append(f"judge's genre on {name}: {confusion['classes'][top]} for {predicted[top]} of "
                 f"{sum(predicted)} clips")
  return lines


def headline(report: dict) -> str:
  """The metric table as fixed-width text: one row per metric, one column per clip set."""
  columns = _columns(report)
  width = max(len(report["sets"][c]["title"]) for c in columns) + 2
  lines = [f"{'metric':<22}" + "".join(f"{report['sets'][c]['title']:>{width}}" for c in columns)]
  for name, metric in report["metrics"].items():
    lines.append(f"{name:<22}" + "".join(f"{_format(metric['values'].get(c)):>{width}}"
                                         for c in columns) + f"  ({_direction(metric)})")
  lines += _p_value_lines(report)
  lines += _memorization_lines(report)
  lines += _per_window_lines(report)
  lines += _melody_lines(report)
  lines += _joins_lines(report)
  lines += _story_lines(report)
  lines += _confusion_lines(report)
  lines += _token_probe_lines(report)
  lines += [f"{name}: unavailable, {reason}" for name, reason in report["unavailable"].items()]
  lines += [f"{name} set: not computed, {reason}" for name, reason in report["sets_not_given"].items()]
  return "\n".join(lines)


def _png(figure: Figure) -> str:
  buffer = io.BytesIO()
  figure.tight_layout()
  figure.savefig(buffer, format="png")
  return f"<img alt='plot' src='data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}'>"


def _bar_plots(report: dict) -> str:
  """One small bar chart per metric: its value on every clip set."""
  metrics = report["metrics"]
  if not metrics:
    return ""
  columns = _columns(report)
  per_row = 3
  rows = -(-len(metrics) // per_row)
  figure = Figure(figsize=(4 * per_row, 3 * rows), dpi=80)
  for i, (name, metric) in enumerate(metrics.items()):
    axes = figure.add_subplot(rows, per_row, i + 1)
    present = [c for c in columns if metric["values"].get(c) is not None]
    axes.bar(range(len(present)), [metric["values"][c] for c in present],
             color=["C3" if c == "generated" else "C0" for c in present])
    axes.set_xticks(range(len(present)), [report["sets"][c]["title"] for c in present],
                    rotation=30, ha="right", fontsize=8)
    axes.set_title(f"{name} ({_direction(metric)})", fontsize=9)
  return _png(figure)


def _fad_curve_plot(report: dict) -> str:
  """FAD against 1/N per set with its straight-line fit; the intercept is FAD_inf."""
  curves = report["fad_curves"]
  if not curves:
    return ""
  figure = Figure(figsize=(6, 4), dpi=80)
  axes = figure.add_subplot()
  for i, (name, curve) in enumerate(curves.items()):
    inverse = [1.0 / n for n in curve["sizes"]]
    axes.plot(inverse, curve["fad"], "o", color=f"C{i}", label=report["sets"][name]["title"])
    axes.plot([0.0, max(inverse)], [curve["fad_inf"], curve["fad_inf"] + curve["slope"] * max(inverse)],
              "-", color=f"C{i}")
  axes.set_xlabel("1 / N (musicnn windows)")
  axes.set_ylabel("FAD_musicnn")
  axes.legend(fontsize=8)
  return _png(figure)


def _coherence_rows(report: dict) -> list[tuple[str, str, dict]]:
  """(set title, length in seconds, its coherence_by_length group) of every set and length."""
  return [(report["sets"].get(name, {"title": name})["title"], length, group)
          for name, by_length in report.get("coherence", {}).items()
          for length, group in by_length.items()]


def _coherence_html(report: dict) -> str:
  """A table per set and clip length, and drift from the first window against position."""
  rows = _coherence_rows(report)
  if not rows:
    return ""
  table = "".join(f"<tr><td>{html.escape(title)}</td><td>{length} s</td><td>{group['clips']}</td>"
                  f"<td>{_format(group['self_similarity'])}</td><td>{_format(group['mean_step'])}</td>"
                  f"<td>{_format(group['largest_step_ratio'])}</td><td>{_format(group['drift'][-1])}</td></tr>"
                  for title, length, group in rows)
  figure = Figure(figsize=(6, 4), dpi=80)
  axes = figure.add_subplot()
  for title, length, group in rows:
    axes.plot(group["position_s"], group["drift"], "o-", label=f"{title}, {length} s")
  axes.set_xlabel("window start (s)")
  axes.set_ylabel("1 - cosine to the first window")
  axes.legend(fontsize=8)
  return ("<h2>Coherence against length</h2><table><tr><th>set</th><th>length</th><th>clips</th>"
          "<th>self-similarity</th><th>mean step</th><th>largest / median step</th>"
          f"<th>final drift</th></tr>{table}</table>{_png(figure)}")


def _memorization_html(report: dict) -> str:
  """The study's lines and the fraction of examples matched against the prompt length T."""
  study = report.get("memorization")
  if not study:
    return ""
  items = "".join(f"<li>{html.escape(line.strip())}</li>" for line in _memorization_lines(report)[1:])
  figure = Figure(figsize=(6, 4), dpi=80)
  axes = figure.add_subplot()
  for key, label in (("exact_match", "exact"), ("approximate_match", "approximate")):
    axes.plot(study["prompt_seconds"], study[key], "o-", label=label)
  axes.axhline(study["false_positive_rate"], color="grey", linestyle=":",
               label="false-positive rate (approximate)")
  axes.set_xlabel("prompt T (s of training semantic tokens)")
  axes.set_ylabel("fraction of training examples matched")
  axes.set_ylim(-0.02, 1.02)
  axes.legend(fontsize=8)
  return (f"<h2>Memorization</h2><p>{html.escape(_memorization_lines(report)[0])}</p>"
          f"<ul>{items}</ul>{_png(figure)}")


def _per_window_html(report: dict) -> str:
  """Per-window MCC and FAD against the window's start in the long generations."""
  windows = report.get("per_window")
  if not windows:
    return ""
  lines = _per_window_lines(report)
  figure = Figure(figsize=(10, 3.5), dpi=80)
  for i, metric in enumerate(("MCC", "FAD_musicnn")):
    axes = figure.add_subplot(1, 2, i + 1)
    points = [(s, v) for s, v in zip(windows["start_s"], windows[metric]) if v is not None]
    axes.plot([s for s, _ in points], [v for _, v in points], "o-")
    if not points:
      axes.text(0.5, 0.5, "no position has a value (see the lines above)", ha="center",
                transform=axes.transAxes)
    axes.set_xlabel("window start (s)")
    axes.set_title(metric, fontsize=9)
  items = "".join(f"<li>{html.escape(line.strip())}</li>" for line in lines[1:])
  return (f"<h2>Per window against position</h2><p>{html.escape(lines[0])}</p><ul>{items}</ul>"
          f"{_png(figure)}")


def _joins_html(report: dict) -> str:
  """A table per stage: ratio, p-value, joins and clips of the generated and the real clips."""
  joins = report.get("joins")
  if not joins:
    return ""

  def cells(figures):
    if figures is None:
      return "<td colspan='3'>no joins (clips shorter than a window)</td>"
    return (f"<td>{_format(figures['ratio'])}</td><td>{_format(figures['p_value'])}</td>"
            f"<td>{figures['joins']} in {figures['clips']}</td>")

  rows = "".join(f"<tr><td>{html.escape(stage)}</td>{cells(pair['generated'])}{cells(pair['real'])}</tr>"
                 for stage, pair in joins.items())
  return ("<h2>Window joins</h2><p class='note'>Spectral flux (change of the log spectrum between "
          "consecutive 20 ms frames) at the boundaries where a stage starts a new window, over the "
          "flux at every boundary: 1 is no jump. p: one-sided permutation test against as many "
          "random boundaries per clip. Real clips are measured at the joins a generation of their "
          "length would have: what a signal without seams scores.</p><table><tr><th>stage</th>"
          "<th>generated ratio</th><th>p</th><th>joins in clips</th><th>real ratio</th><th>p</th>"
          f"<th>joins in clips</th></tr>{rows}</table>")


def _story_html(report: dict) -> str:
  """Own and other segment accuracy of the generated and real stories, and each generated
  story's timeline: per window its start, the genre predicted and its segment."""
  story = report.get("story")
  if not story:
    return ""

  def row(name, figures):
    if isinstance(figures, str):
      return f"<tr><td>{name}</td><td colspan='6'>{html.escape(figures)}</td></tr>"
    skipped = "; ".join(f"{n} {why}" for why, n in figures["skipped"].items()) or "none"
    return (f"<tr><td>{name}</td><td>{figures['stories']}</td><td>{figures['windows']}</td>"
            f"<td>{_format(figures['own_segment_accuracy'])}</td>"
            f"<td>{_format(figures['other_segment_accuracy'])}</td>"
            f"<td>{_format(figures['p_value'])}</td><td>{html.escape(skipped)}</td></tr>")

  timelines = "".join(
      "<li>" + html.escape(" | ".join(f"{k}: {s['genre']} ({s['seconds']:g} s)"
                                      for k, s in enumerate(timeline["segments"])))
      + ": " + html.escape(", ".join(f"{start:g} s {genre} [{k}]" for start, genre, k in zip(
          timeline["start_s"], timeline["predicted"], timeline["segment"]))) + "</li>"
      for timeline in story["generated"]["timelines"])
  return ("<h2>Story mode</h2><p class='note'>The label judge's genre of each "
          f"{story['generated']['window_seconds']:.3g} s window that lies inside one segment of a "
          "story line, against its own segment's caption genre and against the other segment's "
          "(the control); p: one-sided paired sign-flip test over windows. Real: the same stories "
          "made of their captions' real clips.</p><table><tr><th>audio</th><th>stories scored</th>"
          "<th>windows</th><th>own segment</th><th>other segment</th><th>p</th><th>skipped</th>"
          f"</tr>{row('generated', story['generated'])}{row('real', story['real'])}</table>"
          f"<p class='note'>Generated timelines (segment index: genre; window start, genre "
          f"predicted [its segment]):</p><ul>{timelines}</ul>")


def _confusion_html(report: dict) -> str:
  """Per set, the judge's genre confusion: rows the prompts' genres, columns its predictions."""
  confusions = report.get("judge_genre_confusion")
  if not confusions:
    return ""
  tables = []
  for name, confusion in confusions.items():
    head = "".join(f"<th>{html.escape(c)}</th>" for c in confusion["classes"])
    rows = "".join(f"<tr><td>{html.escape(c)}</td>" + "".join(f"<td>{n}</td>" for n in counts)
                   + "</tr>" for c, counts in zip(confusion["classes"], confusion["counts"]))
    tables.append(f"<h3>{html.escape(report['sets'][name]['title'])}</h3><table><tr>"
                  f"<th>labelled \\ predicted</th>{head}</tr>{rows}</table>")
  return ("<h2>The judge's genres</h2><p class='note'>Clips per genre of the prompt (rows) and "
          "genre the label judge predicts (columns). A column that takes every row is a judge "
          f"hearing one genre in everything.</p>{''.join(tables)}")


def _token_probes_html(report: dict) -> str:
  """The token probes as a table: representation and source, then per head its score cell."""
  lines = _token_probe_lines(report)
  if not lines:
    return ""
  rows = "".join(f"<tr><td>{html.escape(row['representation'])}</td><td>{row['source']}</td>"
                 f"<td>{row['clips']}</td>"
                 + "".join(f"<td>{html.escape(_token_probe_cell(row[head]))}</td>"
                           for head in ("genre", "instruments", "mood")) + "</tr>"
                 for row in report["token_probes"])
  return (f"<h2>Token probes</h2><p class='note'>{html.escape(lines[0])} Where a representation "
          "of real audio falls to the majority baseline, no stage after it can carry that label."
          "</p><table><tr><th>tokens</th><th>source</th><th>clips</th><th>genre</th>"
          f"<th>instruments</th><th>mood</th></tr>{rows}</table>")


def write_html(path: str, report: dict) -> str:
  """Writes the report as one page; returns `path`."""
  columns = _columns(report)
  head = "".join(f"<th>{html.escape(report['sets'][c]['title'])}<br>"
                 f"<span class='note'>{report['sets'][c]['clips']} clips, "
                 f"{report['sets'][c]['paired_clips']} paired</span></th>" for c in columns)
  rows = "".join(
      f"<tr><td>{html.escape(name)} <span class='note'>({_direction(metric)})</span></td>"
      + "".join(f"<td>{_format(metric['values'].get(c))}</td>" for c in columns) + "</tr>"
      for name, metric in report["metrics"].items())
  missing = "".join(f"<li>{html.escape(name)}: {html.escape(reason)}</li>"
                    for name, reason in {**report["unavailable"], **{
                        f"{k} set": v for k, v in report["sets_not_given"].items()}}.items())
  notes = "".join(f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in report["notes"].items())
  p_values = "".join(f"<li>{html.escape(line)}</li>" for line in _p_value_lines(report))
  inputs = html.escape(", ".join(f"{k}={v}" for k, v in report.get("inputs", {}).items()))
  melody = "".join(f"<h2>Melody adherence</h2><p>{html.escape(line)}</p>"
                   for line in _melody_lines(report))
  return html_page.write_page(
      path, "musiclm-eval", _STYLE,
      f"<p class='note'>{inputs}</p>\n<table><tr><th>metric</th>{head}</tr>{rows}</table>\n"
      f"<h2>True vs shuffled prompts</h2><ul>{p_values}</ul>\n"
      f"<h2>Not reported</h2><ul>{missing}</ul>\n<h2>Notes</h2><ul>{notes}</ul>\n"
      f"<h2>Plots</h2>{_bar_plots(report)}{_fad_curve_plot(report)}\n"
      f"{_coherence_html(report)}\n{_joins_html(report)}\n{_story_html(report)}\n"
      f"{_confusion_html(report)}\n"
      f"{_memorization_html(report)}\n"
      f"{_per_window_html(report)}\n{melody}\n{_token_probes_html(report)}")
