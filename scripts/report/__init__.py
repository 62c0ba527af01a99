"""`userops report`: one self-contained HTML page of the platform's numbers.

`fetch` reads the services' admin APIs into a `data.ReportData`; `derive` turns what the
segmenter serves into the series the report needs (stage populations over time, the activation
funnel); `render` is a pure function from that data to HTML with every chart and script inline,
so the file opens with no network; `browser` opens a report in headless Chromium and checks it.
"""
