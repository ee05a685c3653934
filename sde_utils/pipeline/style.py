"""The report's stylesheet (inline in every page: no file to fetch)."""

CSS = """
:root { --blue: #0173b2; --red: #b3261e; --green: #137333; --grey: #666; --line: #ddd; }
* { box-sizing: border-box; }
body { font: 15px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       margin: 0; background: #fafafa; overflow-wrap: break-word; }
header, main { max-width: 1180px; margin: 0 auto; padding: 0 24px; }
header { padding-top: 28px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 21px; margin: 40px 0 12px; padding-bottom: 4px; border-bottom: 2px solid #222; }
h3 { font-size: 17px; margin: 24px 0 8px; }
.sub { color: var(--grey); margin: 0 0 12px; }
.stamp { color: var(--grey); font-size: 12.5px; font-weight: normal; margin-left: 8px; }
.stale { color: var(--red); font-weight: 600; }
.banner { background: #fdecea; border-left: 4px solid var(--red); padding: 8px 12px; }
nav { margin: 12px 0 0; font-size: 14px; }
nav a { margin-right: 14px; }
a { color: var(--blue); }
ul.findings { margin: 4px 0 12px; padding-left: 22px; }
ul.findings li { margin: 3px 0; }
.table-wrap { max-width: 100%; overflow-x: auto; }
table { border-collapse: collapse; margin: 6px 0 12px; background: white; font-size: 13px;
        max-width: 100%; }
th, td { border: 1px solid var(--line); padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.yes { color: var(--green); font-weight: 600; }
td.no { color: var(--red); font-weight: 600; }
.status-ok { color: var(--green); font-weight: 600; }
.status-failed, .status-interrupted { color: var(--red); font-weight: 600; }
figure { margin: 14px 0 26px; background: white; border: 1px solid var(--line);
         border-radius: 6px; padding: 12px; }
figure img { max-width: 100%; max-height: 430px; width: auto; height: auto; display: block;
             margin: 0 auto; }
.nbfigs { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr));
          gap: 0 18px; align-items: start; }
.nbfigs figure { margin: 10px 0 18px; }
.nbfigs figure img { max-height: 360px; }
.nbfigs figure.wide { grid-column: 1 / -1; }
.nbfigs figure.wide img { max-height: 520px; }
figcaption { margin-top: 8px; font-size: 14px; }
figcaption .ours { margin-top: 6px; padding: 6px 10px; background: #eef5fb;
                   border-left: 4px solid var(--blue); }
figcaption .files { margin-top: 4px; font-size: 12.5px; color: var(--grey); }
details { margin: 4px 0 10px; }
summary { cursor: pointer; color: var(--grey); }
.note { color: var(--grey); font-style: italic; }
pre { background: white; border: 1px solid var(--line); padding: 8px; overflow-x: auto;
      font-size: 12.5px; white-space: pre-wrap; }
footer { max-width: 1180px; margin: 40px auto; padding: 0 24px; color: var(--grey);
         font-size: 13px; }
"""

__all__ = ["CSS"]
