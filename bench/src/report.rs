//! The figures of a scale run: each section one line of the summary with its values, the data size and the
//! verdict against its target. A run writes them as JSON; `promsd-bench summary` reads several runs and
//! prints the medians (min-max) with the verdict taken on the median.

use anyhow::Context;
use serde_json::{Value as Json, json};

use crate::layout::Layout;

#[derive(Debug, Clone)]
pub enum Check {
    Lt(String, f64),
    Le(String, f64),
    Ge(String, f64),
    Text(String, String),
}

impl Check {
    pub fn lt(name: &str, bound: f64) -> Self {
        Self::Lt(name.into(), bound)
    }
    pub fn le(name: &str, bound: f64) -> Self {
        Self::Le(name.into(), bound)
    }
    pub fn ge(name: &str, bound: f64) -> Self {
        Self::Ge(name.into(), bound)
    }
    pub fn text(name: &str, want: &str) -> Self {
        Self::Text(name.into(), want.into())
    }

    fn name(&self) -> &str {
        match self {
            Self::Lt(n, _) | Self::Le(n, _) | Self::Ge(n, _) | Self::Text(n, _) => n,
        }
    }

    fn to_json(&self) -> Json {
        match self {
            Self::Lt(n, b) => json!({"kind": "lt", "name": n, "bound": b}),
            Self::Le(n, b) => json!({"kind": "le", "name": n, "bound": b}),
            Self::Ge(n, b) => json!({"kind": "ge", "name": n, "bound": b}),
            Self::Text(n, t) => json!({"kind": "text", "name": n, "want": t}),
        }
    }

    fn from_json(j: &Json) -> anyhow::Result<Self> {
        let name = j["name"].as_str().context("check without name")?.to_string();
        let bound = j["bound"].as_f64().unwrap_or_default();
        Ok(match j["kind"].as_str() {
            Some("lt") => Self::Lt(name, bound),
            Some("le") => Self::Le(name, bound),
            Some("ge") => Self::Ge(name, bound),
            Some("text") => Self::Text(name, j["want"].as_str().unwrap_or_default().to_string()),
            other => anyhow::bail!("unknown check kind {other:?}"),
        })
    }
}

#[derive(Debug, Clone)]
struct Value {
    name: String,
    number: Option<f64>,
    text: Option<String>,
    unit: String,
    digits: usize,
}

#[derive(Debug, Clone)]
pub struct Section {
    id: String,
    title: String,
    values: Vec<Value>,
    note: String,
    checks: Vec<Check>,
    targets: Vec<String>,
    error: Option<String>,
}

impl Section {
    pub fn new(id: &str, title: String) -> Self {
        Self {
            id: id.into(),
            title,
            values: Vec::new(),
            note: String::new(),
            checks: Vec::new(),
            targets: Vec::new(),
            error: None,
        }
    }

    pub fn value(mut self, name: &str, number: f64, unit: &str, digits: usize) -> Self {
        self.values.push(Value { name: name.into(), number: Some(number), text: None, unit: unit.into(), digits });
        self
    }

    pub fn text(mut self, name: &str, text: &str) -> Self {
        self.values.push(Value {
            name: name.into(),
            number: None,
            text: Some(text.into()),
            unit: String::new(),
            digits: 0,
        });
        self
    }

    pub fn note(mut self, note: &str) -> Self {
        self.note = note.into();
        self
    }

    pub fn check(mut self, check: Check, target: &str) -> Self {
        self.checks.push(check);
        self.targets.push(target.into());
        self
    }

    pub fn error(mut self, error: &str) -> Self {
        self.error = Some(error.into());
        self
    }

    fn to_json(&self) -> Json {
        json!({
            "id": self.id,
            "title": self.title,
            "note": self.note,
            "error": self.error,
            "targets": self.targets,
            "checks": self.checks.iter().map(Check::to_json).collect::<Vec<_>>(),
            "values": self.values.iter().map(|v| json!({
                "name": v.name, "number": v.number, "text": v.text, "unit": v.unit, "digits": v.digits,
            })).collect::<Vec<_>>(),
        })
    }

    fn from_json(j: &Json) -> anyhow::Result<Self> {
        let strings = |key: &str| -> Vec<String> {
            j[key]
                .as_array()
                .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
                .unwrap_or_default()
        };
        let mut values = Vec::new();
        for v in j["values"].as_array().context("section without values")? {
            values.push(Value {
                name: v["name"].as_str().unwrap_or_default().to_string(),
                number: v["number"].as_f64(),
                text: v["text"].as_str().map(str::to_string),
                unit: v["unit"].as_str().unwrap_or_default().to_string(),
                digits: v["digits"].as_u64().unwrap_or(2) as usize,
            });
        }
        let checks = j["checks"].as_array().map(|a| a.iter().map(Check::from_json).collect()).transpose()?;
        Ok(Self {
            id: j["id"].as_str().context("section without id")?.to_string(),
            title: j["title"].as_str().unwrap_or_default().to_string(),
            values,
            note: j["note"].as_str().unwrap_or_default().to_string(),
            checks: checks.unwrap_or_default(),
            targets: strings("targets"),
            error: j["error"].as_str().map(str::to_string),
        })
    }
}

pub struct Report {
    pub layout: Layout,
    /// Keys in dnsd's view after the first load.
    pub keys: usize,
    sections: Vec<Section>,
}

impl Report {
    pub fn new(layout: Layout) -> Self {
        Self { layout, keys: 0, sections: Vec::new() }
    }

    pub fn add(&mut self, section: Section) {
        self.sections.push(section);
    }

    pub fn to_json(&self) -> String {
        let j = json!({
            "keys": self.keys,
            "services": self.layout.services,
            "instances": self.layout.instances,
            "sections": self.sections.iter().map(Section::to_json).collect::<Vec<_>>(),
        });
        serde_json::to_string_pretty(&j).unwrap_or_default()
    }

    pub fn render_single(&self) -> String {
        render(std::slice::from_ref(&self.sections))
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 }
}

/// One line per section id (in the first run's order), over all runs.
fn render(runs: &[Vec<Section>]) -> String {
    let mut out = String::new();
    let Some(first) = runs.first() else { return out };
    for section in first {
        let same: Vec<&Section> = runs.iter().filter_map(|r| r.iter().find(|s| s.id == section.id)).collect();
        let errors: Vec<&str> = same.iter().filter_map(|s| s.error.as_deref()).collect();
        let mut parts = Vec::new();
        let mut medians = std::collections::HashMap::new();
        let mut texts = std::collections::HashMap::new();
        for value in &section.values {
            let label = if value.name.is_empty() { String::new() } else { format!("{} ", value.name) };
            let unit = if value.unit.is_empty() { String::new() } else { format!(" {}", value.unit) };
            if value.text.is_some() {
                let mut all: Vec<String> = same
                    .iter()
                    .filter_map(|s| s.values.iter().find(|v| v.name == value.name).and_then(|v| v.text.clone()))
                    .collect();
                all.dedup();
                texts.insert(value.name.clone(), all.clone());
                parts.push(format!("{label}{}", all.join("/")));
                continue;
            }
            let mut numbers: Vec<f64> = same
                .iter()
                .filter_map(|s| s.values.iter().find(|v| v.name == value.name).and_then(|v| v.number))
                .collect();
            if numbers.is_empty() {
                continue;
            }
            let d = value.digits;
            let m = median(&mut numbers);
            medians.insert(value.name.clone(), m);
            let (lo, hi) = (numbers[0], numbers[numbers.len() - 1]);
            if numbers.len() > 1 {
                parts.push(format!("{label}{m:.d$}{unit} ({lo:.d$}-{hi:.d$})"));
            } else {
                parts.push(format!("{label}{m:.d$}{unit}"));
            }
        }
        let mut line = format!("{}:", section.title);
        if !parts.is_empty() {
            line.push(' ');
            line.push_str(&parts.join(", "));
        }
        if !section.note.is_empty() {
            line.push(' ');
            line.push_str(&section.note);
        }
        if runs.len() > 1 {
            line.push_str(&format!(" [{} of {} runs]", same.len(), runs.len()));
        }
        if let Some(e) = errors.first() {
            line.push_str(&format!(" FAILED ({} of {} runs): {e}", errors.len(), runs.len()));
        }
        if section.checks.is_empty() {
            if errors.is_empty() {
                line.push_str(" -- (reported)");
            }
        } else {
            let met = errors.is_empty()
                && section.checks.iter().all(|check| match check {
                    Check::Text(name, want) => texts.get(name).is_some_and(|all| all.iter().all(|t| t == want)),
                    other => medians.get(other.name()).is_some_and(|&v| match other {
                        Check::Lt(_, b) => v < *b,
                        Check::Le(_, b) => v <= *b,
                        Check::Ge(_, b) => v >= *b,
                        Check::Text(..) => false,
                    }),
                });
            line.push_str(&format!(
                " -- target {}: {}",
                section.targets.join(", "),
                if met { "met" } else { "NOT met" }
            ));
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// `promsd-bench summary FILE...`: the medians of several runs' figures.
pub fn summary(files: &[std::path::PathBuf]) -> anyhow::Result<()> {
    let mut runs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let j: Json = serde_json::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
        let sections = j["sections"].as_array().context("no sections")?;
        runs.push(sections.iter().map(Section::from_json).collect::<anyhow::Result<Vec<_>>>()?);
    }
    print!("{}", render(&runs));
    Ok(())
}
