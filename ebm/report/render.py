"""The report as Markdown and as one HTML page, from its sections."""
from __future__ import annotations

import html
import json

from ebm.report.runs import Section


INTRO = ("Every number was measured by this pipeline (`data/*/…/metrics.json`); the papers' reported values "
         "stand beside ours in parentheses with their source tag from METHODS.md §7 ([P] paper, [C] code, "
         "[S] secondary source, [U] unverified); they used WRN-28-10, full data and ~10⁵ steps, so they are "
         "a reference, not a target at this budget. ECE: equal-width confidence bins. AUROC: test set as "
         "positives, higher score = more in-distribution (logpx: LSE of logits; maxprob: max softmax; "
         "pxgrad: minus the norm of the input gradient of logpx). PGD: white-box, accuracy on the attacked "
         "subset. IS/FID: torch-fidelity, fresh samples vs the evaluate.fid_reference split, sample sizes "
         "beside each value.")


def md(text: str) -> str:
    """Text for a markdown line or table cell: markdown renders raw HTML, so it is escaped as in
    ``index.html``; ``|`` would end a cell and ``[``/``]`` an image caption."""
    return html.escape(str(text), quote=False).replace("|", "\\|")


def markdown(sections: list[Section], missing: list[str], prov: dict) -> str:
    lines = ["# Hybrid discriminative-generative classifiers: results", "", INTRO]
    if missing:
        lines += ["", f"Missing runs (no metrics.json): {md(', '.join(missing))}"]
    for sec in sections:
        lines += ["", f"## {md(sec.title)}"]
        for _, header, rows in sec.tables:
            lines += ["", "| " + " | ".join(map(md, header)) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(map(md, cells)) + " |" for _, cells in rows]
        lines += [""] + [f"- {md(n)}" for n in sec.notes] if sec.notes else []
        lines += [""] + [f"![{md(cap).replace('[', '(').replace(']', ')')}](<{md(name)}>)"
                         for name, cap in sec.figures]
    lines += ["", "## Provenance", "", "```json", json.dumps(prov, indent=2, sort_keys=True), "```", ""]
    return "\n".join(lines)


def _html_table(tid: str, header: list[str], rows: list[tuple[str, list[str]]]) -> str:
    e = html.escape
    th = "".join(f"<th>{e(h)}</th>" for h in header)
    trs = "".join(f"<tr data-run='{e(run)}'>" + "".join(f"<td>{e(c)}</td>" for c in cells) + "</tr>"
                  for run, cells in rows)
    return f"<table id='{e(tid)}'><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"


def html_page(sections: list[Section], missing: list[str], prov: dict) -> str:
    e = html.escape
    body = ["<h1>Hybrid discriminative-generative classifiers: results</h1>", f"<p>{e(INTRO)}</p>"]
    if missing:
        body.append(f"<p class='missing'>Missing runs (no metrics.json): {e(', '.join(missing))}</p>")
    for sec in sections:
        body.append(f"<h2>{e(sec.title)}</h2>")
        body += [f"<div class='scroll'>{_html_table(*t)}</div>" for t in sec.tables]
        if sec.notes:
            body.append("<ul class='notes'>" + "".join(f"<li>{e(n)}</li>" for n in sec.notes) + "</ul>")
        body += [f"<figure><img src='{e(n)}' alt='{e(c)}'><figcaption>{e(c)}</figcaption></figure>"
                 for n, c in sec.figures]
    body.append(f"<h2>Provenance</h2><pre>{e(json.dumps(prov, indent=2, sort_keys=True))}</pre>")
    style = ("body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}.scroll{overflow-x:auto}"
             "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #999;padding:3px 6px;"
             "text-align:right;font-size:13px}figure{display:inline-block;margin:8px;vertical-align:top}"
             "img{image-rendering:pixelated;max-width:100%}.notes{font-size:12px;color:#555}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>EBM report</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")
