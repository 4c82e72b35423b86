//! The full-screen terminal of `profiler top`, with ratatui: a header
//! (target, uptime, samples/s, what was dropped), the views as tabs, the
//! current table, and the keys. The terminal is put back on every way out:
//! a return, an error (the guard's drop) and a panic (ratatui's hook).

use ratatui::{
    DefaultTerminal, Frame,
    crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers},
    layout::{Constraint, Layout, Rect},
    style::{Modifier, Style, Stylize as _},
    text::Line,
    widgets::{Block, Cell, Clear, Paragraph, Row, Table, TableState, Tabs},
};

use super::{State, view::View};

/// The terminal, put back when dropped.
pub struct Screen {
    terminal: DefaultTerminal,
    pub table_state: TableState,
}

impl Screen {
    /// Takes over the terminal (alternate screen, raw mode), with a panic
    /// hook that gives it back.
    pub fn open() -> anyhow::Result<Screen> {
        let terminal = ratatui::try_init()
            .map_err(|err| anyhow::anyhow!("cannot take over the terminal: {err}"))?;
        Ok(Screen {
            terminal,
            table_state: TableState::default().with_selected(Some(0)),
        })
    }

    pub fn draw(&mut self, state: &State) -> anyhow::Result<()> {
        let table_state = &mut self.table_state;
        self.terminal
            .draw(|frame| draw(frame, state, table_state))
            .map_err(|err| anyhow::anyhow!("cannot draw on the terminal: {err}"))?;
        Ok(())
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// What a key asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Quit,
    /// Redraw (the state changed).
    Redraw,
    /// Rebuild the table (view, window, sort, filter or process changed).
    Rebuild,
    Nothing,
}

/// The keys pressed since the last call, applied to the state.
pub fn keys(state: &mut State, screen: &mut Screen) -> anyhow::Result<Action> {
    let mut action = Action::Nothing;
    while event::poll(std::time::Duration::ZERO)? {
        let Event::Key(key) = event::read()? else {
            action = worst(action, Action::Redraw);
            continue;
        };
        if key.kind != KeyEventKind::Press {
            continue;
        }
        let next = key_action(state, screen, key);
        if next == Action::Quit {
            return Ok(Action::Quit);
        }
        action = worst(action, next);
    }
    Ok(action)
}

fn worst(a: Action, b: Action) -> Action {
    match (&a, &b) {
        (Action::Rebuild, _) | (_, Action::Nothing) => a,
        _ => b,
    }
}

fn key_action(state: &mut State, screen: &mut Screen, key: KeyEvent) -> Action {
    if let Some(filter) = state.editing.as_mut() {
        match key.code {
            KeyCode::Enter => {
                state.filter = state.editing.take().unwrap_or_default();
                return Action::Rebuild;
            }
            KeyCode::Esc => {
                state.editing = None;
            }
            KeyCode::Backspace => {
                filter.pop();
            }
            KeyCode::Char(c) => filter.push(c),
            _ => {}
        }
        return Action::Redraw;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return Action::Quit;
    }
    let selected = screen.table_state.selected().unwrap_or(0);
    match key.code {
        KeyCode::Char('q') => Action::Quit,
        KeyCode::Char('?') | KeyCode::F(1) => {
            state.help = !state.help;
            Action::Redraw
        }
        KeyCode::Tab | KeyCode::Right => {
            state.next_view(1);
            screen.table_state.select(Some(0));
            Action::Rebuild
        }
        KeyCode::BackTab | KeyCode::Left => {
            state.next_view(-1);
            screen.table_state.select(Some(0));
            Action::Rebuild
        }
        KeyCode::Char(c @ '1'..='6') => {
            let index = c as usize - '1' as usize;
            if let Some(view) = View::ALL.get(index)
                && state.views().contains(view)
            {
                state.view = *view;
                screen.table_state.select(Some(0));
            }
            Action::Rebuild
        }
        KeyCode::Char('s') => {
            state.sort = Some((state.table.sort + 1) % state.table.headers.len().max(1));
            Action::Rebuild
        }
        KeyCode::Char(' ') | KeyCode::Char('p') => {
            state.paused = !state.paused;
            Action::Redraw
        }
        KeyCode::Char('w') => {
            state.window = state.window.next();
            Action::Rebuild
        }
        KeyCode::Char('/') => {
            state.editing = Some(state.filter.clone());
            Action::Redraw
        }
        KeyCode::Down | KeyCode::Char('j') => {
            let last = state.table.rows.len().saturating_sub(1);
            screen.table_state.select(Some((selected + 1).min(last)));
            Action::Redraw
        }
        KeyCode::Up | KeyCode::Char('k') => {
            screen.table_state.select(Some(selected.saturating_sub(1)));
            Action::Redraw
        }
        KeyCode::Enter if state.view == View::Processes => {
            match state.table.rows.get(selected).and_then(|r| r.pid) {
                Some(pid) => {
                    state.drill(pid);
                    screen.table_state.select(Some(0));
                    Action::Rebuild
                }
                None => Action::Nothing,
            }
        }
        KeyCode::Esc | KeyCode::Backspace if state.drilled() => {
            state.undrill();
            screen.table_state.select(Some(0));
            Action::Rebuild
        }
        _ => Action::Nothing,
    }
}

const HELP: &[(&str, &str)] = &[
    ("Tab, Left, Right, 1-6", "switch view"),
    ("s", "sort by the next column"),
    ("w", "window: last interval, last 10 s, since start"),
    ("space, p", "pause"),
    (
        "/",
        "filter rows by a substring (Enter applies, Esc cancels)",
    ),
    ("Up, Down", "select a row"),
    ("Enter", "on a process: show that process"),
    ("Esc", "back to every process"),
    ("?", "this help"),
    ("q, Ctrl-C", "quit"),
];

fn draw(frame: &mut Frame, state: &State, table_state: &mut TableState) {
    let [header, tabs, body, footer] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(Paragraph::new(state.header_lines()), header);

    let views = state.views();
    let titles: Vec<String> = views
        .iter()
        .map(|v| {
            let n = View::ALL.iter().position(|a| a == v).unwrap_or(0) + 1;
            format!("{n} {}", v.name())
        })
        .collect();
    let selected = views.iter().position(|v| *v == state.view).unwrap_or(0);
    frame.render_widget(
        Tabs::new(titles)
            .select(selected)
            .highlight_style(Style::new().add_modifier(Modifier::REVERSED)),
        tabs,
    );

    let table = &state.table;
    let mut notes: Vec<Line> = table.notes.iter().map(|n| Line::from(n.as_str())).collect();
    if !state.filter.is_empty() {
        notes.push(Line::from(format!("filter: {:?}", state.filter)));
    }
    let [notes_area, table_area] =
        Layout::vertical([Constraint::Length(notes.len() as u16), Constraint::Min(1)]).areas(body);
    frame.render_widget(Paragraph::new(notes), notes_area);
    let widths: Vec<Constraint> = table
        .headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            if i + 1 == table.headers.len() {
                Constraint::Min(20)
            } else {
                let widest = table
                    .rows
                    .iter()
                    .filter_map(|r| r.cells.get(i))
                    .map(|c| c.chars().count())
                    .max()
                    .unwrap_or(0)
                    .max(h.len())
                    .min(60);
                Constraint::Length(widest as u16)
            }
        })
        .collect();
    let header_row = Row::new(table.headers.iter().enumerate().map(|(i, h)| {
        let cell = Cell::from(*h);
        if i == table.sort {
            cell.underlined()
        } else {
            cell
        }
    }))
    .bold();
    // Numbers to the right, as top and perf top show them.
    let rows = table.rows.iter().map(|r| {
        Row::new(r.cells.iter().zip(&r.keys).map(|(c, key)| {
            if key.is_nan() {
                Cell::from(c.as_str())
            } else {
                Cell::from(Line::from(c.as_str()).right_aligned())
            }
        }))
    });
    let empty = table.rows.is_empty();
    frame.render_stateful_widget(
        Table::new(rows, widths)
            .header(header_row)
            .column_spacing(2)
            .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED)),
        table_area,
        table_state,
    );
    if empty {
        let area = Rect {
            y: table_area.y.saturating_add(1),
            height: 1.min(table_area.height.saturating_sub(1)),
            ..table_area
        };
        frame.render_widget(Paragraph::new("(nothing yet)"), area);
    }

    let footer_text = match &state.editing {
        Some(filter) => format!("filter: {filter}_   (Enter applies, Esc cancels)"),
        None => "q quit  ? help  Tab view  s sort  w window  space pause  / filter  Enter drill in  Esc back".to_owned(),
    };
    frame.render_widget(Paragraph::new(footer_text).reversed(), footer);

    if state.help {
        let lines: Vec<Line> = HELP
            .iter()
            .map(|(k, what)| Line::from(format!("{k:>22}  {what}")))
            .collect();
        let area = centered(frame.area(), 84, lines.len() as u16 + 2);
        frame.render_widget(Clear, area);
        frame.render_widget(
            Paragraph::new(lines).block(Block::bordered().title(" keys ")),
            area,
        );
    }
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    }
}
