"""The scaffold of the self-contained pages the binaries write: musiclm-infer's index.html
(report_html.py) and musiclm-eval's eval.html (eval/report.py).

  write_page("runs/demo/samples/index.html", "MusicLM samples", STYLE, body)

Each page brings its own style (CSS) and body (HTML, whose user text the page escapes);
here are the doctype, the UTF-8 head and file, and the title as heading.
"""
import html


def write_page(path: str, title: str, style: str, body: str) -> str:
  """Writes the page `title` (plain text) with `style` and `body` under an <h1> of the title; returns `path`."""
  title = html.escape(title)
  page = (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{title}</title>"
          f"<style>{style}</style></head><body>\n<h1>{title}</h1>\n{body}\n</body></html>\n")
  with open(path, "w", encoding="utf-8") as f:
    f.write(page)
  return path
