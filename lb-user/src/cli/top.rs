//! `lb top`: a live view of a running instance, refreshed every second from
//! its runtime API (`show stat`): per-frontend and per-server sessions,
//! connection and byte rates, states and check results.
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table};
use ratatui::Frame;

use crate::cli::client;

type StatRow = BTreeMap<String, String>;

fn num(r: &StatRow, k: &str) -> u64 {
    r.get(k).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn txt<'a>(r: &'a StatRow, k: &str) -> &'a str {
    r.get(k).map(String::as_str).unwrap_or("")
}

/// One line of the view: counters now and their rates since the last sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub name: String,
    pub status: String,
    pub weight: String,
    pub cur: u64,
    pub total: u64,
    pub conn_rate: f64,
    pub in_rate: f64,
    pub out_rate: f64,
    pub check: String,
}

/// What one refresh shows.
#[derive(Debug, Default, Clone)]
pub struct Model {
    pub frontends: Vec<Line>,
    pub servers: Vec<Line>,
    pub backends: Vec<Line>,
}

fn key(r: &StatRow) -> (String, String) {
    (txt(r, "pxname").to_string(), txt(r, "svname").to_string())
}

/// Rates per second between two `show stat` samples `secs` apart (counter
/// resets, e.g. `clear counters all`, count as 0).
pub fn model(prev: &[StatRow], now: &[StatRow], secs: f64) -> Model {
    let before: BTreeMap<_, _> = prev.iter().map(|r| (key(r), r)).collect();
    let rate = |r: &StatRow, k: &str| -> f64 {
        let old = before.get(&key(r)).map_or(num(r, k), |p| num(p, k));
        if secs <= 0.0 {
            0.0
        } else {
            num(r, k).saturating_sub(old) as f64 / secs
        }
    };
    let mut m = Model::default();
    for r in now {
        let sv = txt(r, "svname");
        let line = Line {
            name: match sv {
                "FRONTEND" | "BACKEND" => txt(r, "pxname").to_string(),
                _ => format!("{}/{}", txt(r, "pxname"), sv),
            },
            status: txt(r, "status").to_string(),
            weight: txt(r, "weight").to_string(),
            cur: num(r, "scur"),
            total: num(r, "stot"),
            conn_rate: rate(r, "stot"),
            in_rate: rate(r, "bin"),
            out_rate: rate(r, "bout"),
            check: match txt(r, "check_status") {
                "" => String::new(),
                s => format!("{s} {}ms", txt(r, "check_duration")),
            },
        };
        match sv {
            "FRONTEND" => m.frontends.push(line),
            "BACKEND" => m.backends.push(line),
            _ => m.servers.push(line),
        }
    }
    m
}

/// Bytes per second, human-sized.
pub fn human_rate(v: f64) -> String {
    const UNITS: [&str; 5] = ["B/s", "KiB/s", "MiB/s", "GiB/s", "TiB/s"];
    let mut v = v;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn status_style(status: &str) -> Style {
    let c = if status.starts_with("UP") || status == "OPEN" || status == "no check" {
        Color::Green
    } else if status.starts_with("DOWN") {
        Color::Red
    } else {
        Color::Yellow
    };
    Style::default().fg(c)
}

fn table<'a>(title: &'a str, lines: &'a [Line], with_check: bool) -> Table<'a> {
    let mut header = vec![
        "NAME", "STATUS", "WEIGHT", "CUR", "CONN/S", "IN", "OUT", "TOTAL",
    ];
    if with_check {
        header.push("CHECK");
    }
    let rows = lines.iter().map(|l| {
        let mut cells = vec![
            ratatui::widgets::Cell::from(l.name.clone()),
            ratatui::widgets::Cell::from(l.status.clone()).style(status_style(&l.status)),
            ratatui::widgets::Cell::from(l.weight.clone()),
            ratatui::widgets::Cell::from(l.cur.to_string()),
            ratatui::widgets::Cell::from(format!("{:.1}", l.conn_rate)),
            ratatui::widgets::Cell::from(human_rate(l.in_rate)),
            ratatui::widgets::Cell::from(human_rate(l.out_rate)),
            ratatui::widgets::Cell::from(l.total.to_string()),
        ];
        if with_check {
            cells.push(ratatui::widgets::Cell::from(l.check.clone()));
        }
        Row::new(cells)
    });
    let mut widths = vec![
        Constraint::Min(16),
        Constraint::Length(10),
        Constraint::Length(6),
        Constraint::Length(7),
        Constraint::Length(8),
        Constraint::Length(11),
        Constraint::Length(11),
        Constraint::Length(10),
    ];
    if with_check {
        widths.push(Constraint::Length(14));
    }
    Table::new(rows, widths)
        .header(Row::new(header).style(Style::default().add_modifier(Modifier::BOLD)))
        .block(Block::default().borders(Borders::ALL).title(title))
}

/// Draws one frame.
pub fn draw(f: &mut Frame, m: &Model, title: &str) {
    let n = |v: &Vec<Line>| v.len() as u16 + 3;
    let areas = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(n(&m.frontends)),
        Constraint::Length(n(&m.backends)),
        Constraint::Min(3),
    ])
    .split(f.area());
    f.render_widget(Paragraph::new(title.to_string()), areas[0]);
    f.render_widget(table("frontends", &m.frontends, false), areas[1]);
    f.render_widget(table("backends", &m.backends, false), areas[2]);
    f.render_widget(table("servers", &m.servers, true), areas[3]);
}

/// Runs until `q`, Esc or Ctrl-C.
pub fn run(sock: &Path) -> Result<()> {
    // Fail before taking over the terminal if the instance is not there.
    let mut prev = client::stat(sock)?;
    let mut last = Instant::now();
    let mut term = ratatui::init();
    let result = (|| -> Result<()> {
        let mut m = model(&prev, &prev, 0.0);
        let mut error = String::new();
        loop {
            let title = format!(
                "lb top: {}  (refresh 1 s, q to quit){}",
                sock.display(),
                if error.is_empty() {
                    String::new()
                } else {
                    format!("  [{error}]")
                }
            );
            term.draw(|f| draw(f, &m, &title)).context("drawing")?;
            let deadline = last + Duration::from_secs(1);
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                if event::poll(left).context("reading the terminal")? {
                    if let Event::Key(k) = event::read().context("reading the terminal")? {
                        let ctrl_c = k.code == KeyCode::Char('c')
                            && k.modifiers.contains(KeyModifiers::CONTROL);
                        if k.code == KeyCode::Char('q') || k.code == KeyCode::Esc || ctrl_c {
                            return Ok(());
                        }
                    }
                }
            }
            let now = Instant::now();
            match client::stat(sock) {
                Ok(rows) => {
                    m = model(&prev, &rows, now.duration_since(last).as_secs_f64());
                    prev = rows;
                    error.clear();
                }
                // A hung or restarting daemon: keep the last view, say so.
                Err(e) => error = format!("{e:#}"),
            }
            last = now;
        }
    })();
    ratatui::restore();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn rows(stot: u64, bout: u64) -> Vec<StatRow> {
        client::parse_stat(&format!(
            "# pxname,svname,status,weight,scur,stot,bin,bout,check_status,check_duration,\n\
             fe,FRONTEND,OPEN,,2,{stot},0,{bout},,,\n\
             be,s1,UP,10,2,{stot},0,{bout},L4OK,1,\n\
             be,BACKEND,UP,10,2,{stot},0,{bout},,,\n\n"
        ))
        .unwrap()
    }

    #[test]
    fn rates_between_samples() {
        let m = model(&rows(10, 1000), &rows(30, 1000 + 4096), 2.0);
        assert_eq!(m.frontends[0].conn_rate, 10.0);
        assert_eq!(m.servers[0].out_rate, 2048.0);
        assert_eq!(m.servers[0].name, "be/s1");
        assert_eq!(m.servers[0].check, "L4OK 1ms");
        // A counter reset is not a negative rate.
        assert_eq!(
            model(&rows(30, 0), &rows(0, 0), 1.0).servers[0].conn_rate,
            0.0
        );
        assert_eq!(human_rate(2048.0), "2.0 KiB/s");
        assert_eq!(human_rate(12.0), "12 B/s");
    }

    #[test]
    fn draws_every_table() {
        let m = model(&rows(10, 0), &rows(20, 1 << 20), 1.0);
        let mut t = Terminal::new(TestBackend::new(110, 20)).unwrap();
        t.draw(|f| draw(f, &m, "lb top: test")).unwrap();
        let buf = t.backend().buffer();
        let text: String = buf.content().iter().map(|c| c.symbol()).collect();
        for want in [
            "frontends",
            "backends",
            "servers",
            "be/s1",
            "L4OK 1ms",
            "1.0 MiB/s",
            "10.0",
        ] {
            assert!(text.contains(want), "{want} not drawn");
        }
    }
}
