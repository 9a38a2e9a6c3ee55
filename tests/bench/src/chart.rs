//! Markdown tables and horizontal bar charts as SVG, with no drawing library: a chart is a
//! list of labelled bars, each in a series (its colour, named in the legend), drawn on a
//! linear axis from zero.

use std::fmt::Write as _;

/// One bar: its row label, its value, and the series it belongs to (an index into
/// [`Chart::series`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub series: usize,
}

/// A horizontal bar chart.
#[derive(Debug, Clone, Default)]
pub struct Chart {
    pub title: String,
    /// The axis' unit, shown after each value and under the axis (`µs`, `req/s`, `%`).
    pub unit: String,
    /// Series names, in legend order; one is enough for a chart with a single colour.
    pub series: Vec<String>,
    pub bars: Vec<Bar>,
    /// A vertical marker line (a target or a baseline) with its label.
    pub marker: Option<(f64, String)>,
}

const COLOURS: [&str; 6] = [
    "#4c78a8", "#f58518", "#54a24b", "#b279a2", "#e45756", "#72b7b2",
];
const ROW: f64 = 22.0;
const LABEL_WIDTH: f64 = 300.0;
const PLOT_WIDTH: f64 = 420.0;
const VALUE_WIDTH: f64 = 110.0;

impl Chart {
    /// The chart as a standalone SVG document.
    pub fn svg(&self) -> String {
        let top = 40.0 + if self.series.len() > 1 { 20.0 } else { 0.0 };
        let height = top + ROW * self.bars.len() as f64 + 40.0;
        let width = LABEL_WIDTH + PLOT_WIDTH + VALUE_WIDTH;
        let max = self
            .bars
            .iter()
            .map(|bar| bar.value)
            .chain(self.marker.iter().map(|(value, _)| *value))
            .filter(|value| value.is_finite())
            .fold(0.0_f64, f64::max);
        let scale = if max > 0.0 { PLOT_WIDTH / max } else { 0.0 };
        let mut out = String::new();
        let _ = writeln!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(
            out,
            r#"<rect width="{width}" height="{height}" fill="white"/>"#
        );
        let _ = writeln!(
            out,
            r#"<text x="10" y="22" font-size="15" font-weight="bold">{}</text>"#,
            escape(&self.title)
        );
        if self.series.len() > 1 {
            let mut x = 10.0;
            for (index, name) in self.series.iter().enumerate() {
                let _ = writeln!(
                    out,
                    r#"<rect x="{x}" y="34" width="12" height="12" fill="{}"/><text x="{}" y="44">{}</text>"#,
                    colour(index),
                    x + 16.0,
                    escape(name)
                );
                x += 16.0 + 7.0 * name.chars().count() as f64 + 24.0;
            }
        }
        for (row, bar) in self.bars.iter().enumerate() {
            let y = top + ROW * row as f64;
            let length = if bar.value.is_finite() {
                (bar.value * scale).max(0.0)
            } else {
                0.0
            };
            let _ = writeln!(
                out,
                r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
                LABEL_WIDTH - 8.0,
                y + 14.0,
                escape(&bar.label)
            );
            let _ = writeln!(
                out,
                r#"<rect x="{LABEL_WIDTH}" y="{}" width="{length:.1}" height="{}" fill="{}"/>"#,
                y + 3.0,
                ROW - 6.0,
                colour(bar.series)
            );
            let _ = writeln!(
                out,
                r#"<text x="{:.1}" y="{}">{} {}</text>"#,
                LABEL_WIDTH + length + 4.0,
                y + 14.0,
                number(bar.value),
                escape(&self.unit)
            );
        }
        let bottom = top + ROW * self.bars.len() as f64;
        let _ = writeln!(
            out,
            r##"<line x1="{LABEL_WIDTH}" y1="{top}" x2="{LABEL_WIDTH}" y2="{bottom}" stroke="#333"/>"##
        );
        if let Some((value, label)) = &self.marker {
            let x = LABEL_WIDTH + value * scale;
            let _ = writeln!(
                out,
                r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="#c00" stroke-dasharray="4 3"/><text x="{x:.1}" y="{}" fill="#c00" text-anchor="middle">{}</text>"##,
                top - 4.0,
                bottom + 4.0,
                bottom + 18.0,
                escape(label)
            );
        }
        let _ = writeln!(
            out,
            r##"<text x="{}" y="{}" fill="#555" text-anchor="middle">{}</text>"##,
            LABEL_WIDTH + PLOT_WIDTH / 2.0,
            bottom + 34.0,
            escape(&self.unit)
        );
        out.push_str("</svg>\n");
        out
    }
}

fn colour(series: usize) -> &'static str {
    COLOURS[series % COLOURS.len()]
}

/// A value with three significant figures (`1.25`, `12.5`, `125`, `12500`).
pub fn number(value: f64) -> String {
    if !value.is_finite() {
        return "—".to_string();
    }
    let magnitude = value.abs();
    if magnitude >= 100.0 || magnitude == 0.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A markdown table; cells are used as they are (a `|` in one is escaped).
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    let line = |cells: &mut dyn Iterator<Item = String>| {
        let cells: Vec<String> = cells.map(|cell| cell.replace('|', "\\|")).collect();
        format!("| {} |\n", cells.join(" | "))
    };
    out.push_str(&line(&mut headers.iter().map(|h| h.to_string())));
    out.push_str(&line(&mut headers.iter().map(|_| "---".to_string())));
    for row in rows {
        out.push_str(&line(&mut row.iter().cloned()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_three_significant_figures() {
        assert_eq!(number(1.2345), "1.23");
        assert_eq!(number(12.345), "12.3");
        assert_eq!(number(123.45), "123");
        assert_eq!(number(0.012345), "0.012");
        assert_eq!(number(f64::NAN), "—");
    }

    #[test]
    fn a_table_has_a_header_a_rule_and_a_line_per_row() {
        let text = table(
            &["case", "time"],
            &[vec!["a|b".into(), "1".into()], vec!["c".into(), "2".into()]],
        );
        assert_eq!(
            text,
            "| case | time |\n| --- | --- |\n| a\\|b | 1 |\n| c | 2 |\n"
        );
    }

    #[test]
    fn bars_scale_to_the_largest_value_and_text_is_escaped() {
        let chart = Chart {
            title: "a <title>".into(),
            unit: "µs".into(),
            series: vec!["one".into(), "two".into()],
            bars: vec![
                Bar {
                    label: "half".into(),
                    value: 1.0,
                    series: 0,
                },
                Bar {
                    label: "full".into(),
                    value: 2.0,
                    series: 1,
                },
            ],
            marker: Some((1.5, "target".into())),
        };
        let svg = chart.svg();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("a &lt;title&gt;"), "{svg}");
        assert!(
            svg.contains(&format!(r#"width="{:.1}""#, PLOT_WIDTH / 2.0)),
            "{svg}"
        );
        assert!(
            svg.contains(&format!(r#"width="{PLOT_WIDTH:.1}""#)),
            "{svg}"
        );
        assert!(svg.contains(COLOURS[1]), "{svg}");
        assert!(svg.contains(">target<"), "{svg}");
    }
}
