//! Colour themes (TOML files) and how colours reach the terminal.
//!
//! Three themes are compiled in so a fresh install looks right; files in
//! `./themes/*.toml` add to or replace them by name. Colours are given as RGB
//! and degraded at paint time: truecolor when `COLORTERM` says so, the nearest
//! xterm-256 colour otherwise, and no colour at all under `NO_COLOR` (heat is
//! then shown with bold/underline/reverse).

use std::path::Path;

use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;

/// How colours are emitted, decided once from the environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorMode {
    TrueColor,
    Ansi256,
    /// `NO_COLOR` is set: styles use modifiers only.
    NoColor,
}

impl ColorMode {
    /// `NO_COLOR` (any non-empty value) wins; `COLORTERM=truecolor|24bit` gives
    /// RGB; anything else gets the 256-colour palette, which every modern
    /// terminal supports.
    pub fn detect() -> Self {
        Self::from_env(std::env::var("NO_COLOR").ok().as_deref(), std::env::var("COLORTERM").ok().as_deref())
    }
    fn from_env(no_color: Option<&str>, colorterm: Option<&str>) -> Self {
        if no_color.is_some_and(|v| !v.is_empty()) {
            return ColorMode::NoColor;
        }
        match colorterm.map(|s| s.to_ascii_lowercase()) {
            Some(s) if s == "truecolor" || s == "24bit" => ColorMode::TrueColor,
            _ => ColorMode::Ansi256,
        }
    }
}

/// An sRGB colour, written `"#rrggbb"` in theme files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Rgb(pub u8, pub u8, pub u8);

impl TryFrom<String> for Rgb {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let h = s.strip_prefix('#').unwrap_or(&s);
        let bad = || format!("colour '{s}' is not of the form \"#rrggbb\"");
        if h.len() != 6 || !h.is_ascii() {
            return Err(bad());
        }
        let c = |i: usize| u8::from_str_radix(&h[i..i + 2], 16).map_err(|_| bad());
        Ok(Rgb(c(0)?, c(2)?, c(4)?))
    }
}

impl Rgb {
    /// Hex form for the HTML export.
    pub fn hex(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }
    /// Relative luminance (0..1), to pick readable text on a heat cell.
    pub fn luminance(self) -> f32 {
        let lin = |c: u8| {
            let c = c as f32 / 255.0;
            if c <= 0.04045 { c / 12.92 } else { ((c + 0.055) / 1.055).powf(2.4) }
        };
        0.2126 * lin(self.0) + 0.7152 * lin(self.1) + 0.0722 * lin(self.2)
    }
    fn lerp(a: Rgb, b: Rgb, t: f32) -> Rgb {
        let m = |x: u8, y: u8| (x as f32 + (y as f32 - x as f32) * t).round().clamp(0.0, 255.0) as u8;
        Rgb(m(a.0, b.0), m(a.1, b.1), m(a.2, b.2))
    }
}

/// Nearest xterm-256 index: the 6×6×6 cube or the 24-step grey ramp.
pub fn to_ansi256(c: Rgb) -> u8 {
    const LEVELS: [u8; 6] = [0, 95, 135, 175, 215, 255];
    let near = |v: u8| (0..6).min_by_key(|&i| (LEVELS[i] as i32 - v as i32).abs()).unwrap_or(0);
    let (r, g, b) = (near(c.0), near(c.1), near(c.2));
    let cube = Rgb(LEVELS[r], LEVELS[g], LEVELS[b]);
    let avg = (c.0 as u32 + c.1 as u32 + c.2 as u32) / 3;
    let gi = ((avg.saturating_sub(3)) / 10).min(23) as u8;
    let grey_v = 8 + 10 * gi;
    let dist = |x: Rgb| {
        let d = |a: u8, b: u8| (a as i32 - b as i32).pow(2);
        d(x.0, c.0) + d(x.1, c.1) + d(x.2, c.2)
    };
    if dist(Rgb(grey_v, grey_v, grey_v)) < dist(cube) { 232 + gi } else { 16 + 36 * r as u8 + 6 * g as u8 + b as u8 }
}

/// Colours of the chrome (everything but the heat maps).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct UiColors {
    pub fg: Rgb,
    pub bg: Rgb,
    pub muted: Rgb,
    pub accent: Rgb,
    pub border: Rgb,
    pub border_focus: Rgb,
    pub selected_bg: Rgb,
    pub error: Rgb,
    pub ok: Rgb,
    /// Mode badge colours, so edit and navigation mode never look alike.
    pub edit: Rgb,
    pub nav: Rgb,
    /// Prediction bars.
    pub bar: Rgb,
}

/// One theme file.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Theme {
    pub name: String,
    /// Stops of the positive-only map, low → high.
    pub positive: Vec<Rgb>,
    /// Stops of the signed map, most negative → zero → most positive.
    pub signed: Vec<Rgb>,
    pub ui: UiColors,
}

const EMBEDDED: [(&str, &str); 3] = [
    ("dark", include_str!("../../themes/dark.toml")),
    ("light", include_str!("../../themes/light.toml")),
    ("colorblind", include_str!("../../themes/colorblind.toml")),
];

fn sample(stops: &[Rgb], t: f32) -> Rgb {
    match stops.len() {
        0 => Rgb(128, 128, 128),
        1 => stops[0],
        n => {
            let x = t.clamp(0.0, 1.0) * (n - 1) as f32;
            let i = (x.floor() as usize).min(n - 2);
            Rgb::lerp(stops[i], stops[i + 1], x - i as f32)
        }
    }
}

impl Theme {
    /// Parses a theme file; errors name the problem (missing key, bad colour).
    pub fn parse(src: &str) -> anyhow::Result<Theme> {
        let t: Theme = toml::from_str(src).map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::ensure!(t.positive.len() >= 2, "theme '{}': `positive` needs at least 2 colour stops", t.name);
        anyhow::ensure!(t.signed.len() >= 3, "theme '{}': `signed` needs at least 3 colour stops (negative, zero, positive)", t.name);
        Ok(t)
    }

    /// The built-in themes, in cycling order.
    pub fn builtin() -> Vec<Theme> {
        EMBEDDED.iter().map(|(n, s)| Theme::parse(s).unwrap_or_else(|e| panic!("embedded theme {n} is invalid: {e}"))).collect()
    }

    /// Built-ins plus `dir/*.toml` (replacing a built-in of the same name).
    /// Broken files are skipped and reported, not fatal: a typo in a theme
    /// must not keep the explorer from starting.
    pub fn load_all(dir: Option<&Path>) -> (Vec<Theme>, Vec<String>) {
        let mut themes = Self::builtin();
        let mut warnings = Vec::new();
        let Some(dir) = dir else { return (themes, warnings) };
        let Ok(entries) = std::fs::read_dir(dir) else { return (themes, warnings) };
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|e| e == "toml")).collect();
        paths.sort();
        for p in paths {
            match std::fs::read_to_string(&p).map_err(anyhow::Error::from).and_then(|s| Theme::parse(&s)) {
                Ok(t) => match themes.iter_mut().find(|x| x.name == t.name) {
                    Some(slot) => *slot = t,
                    None => themes.push(t),
                },
                Err(e) => warnings.push(format!("theme {} skipped: {e}", p.display())),
            }
        }
        (themes, warnings)
    }

    /// RGB of a normalised score: `[0,1]` on the positive map, `[-1,1]` on the signed one.
    pub fn heat_rgb(&self, value: f32, signed: bool) -> Rgb {
        if signed { sample(&self.signed, (value + 1.0) / 2.0) } else { sample(&self.positive, value) }
    }

    /// Style of a heat cell: coloured background with readable text, or
    /// modifiers (reverse > bold+underline > underline) without colour.
    pub fn heat_style(&self, value: Option<f32>, signed: bool, mode: ColorMode) -> Style {
        let Some(v) = value else { return self.muted(mode) };
        if mode == ColorMode::NoColor {
            let m = v.abs();
            let mods = if m >= 0.75 {
                Modifier::REVERSED | Modifier::BOLD
            } else if m >= 0.5 {
                Modifier::BOLD | Modifier::UNDERLINED
            } else if m >= 0.25 {
                Modifier::UNDERLINED
            } else {
                Modifier::empty()
            };
            let mods = if signed && v < 0.0 { mods | Modifier::ITALIC } else { mods };
            return Style::default().add_modifier(mods);
        }
        let bg = self.heat_rgb(v, signed);
        let fg = if bg.luminance() > 0.35 { Rgb(0, 0, 0) } else { Rgb(255, 255, 255) };
        Style::default().bg(paint(bg, mode)).fg(paint(fg, mode))
    }

    /// Plain text in the theme's colours.
    pub fn base(&self, mode: ColorMode) -> Style {
        match mode {
            ColorMode::NoColor => Style::default(),
            _ => Style::default().fg(paint(self.ui.fg, mode)).bg(paint(self.ui.bg, mode)),
        }
    }
    /// A foreground role colour (accent, error, …); plain without colour.
    pub fn fg(&self, c: Rgb, mode: ColorMode) -> Style {
        match mode {
            ColorMode::NoColor => Style::default(),
            _ => Style::default().fg(paint(c, mode)),
        }
    }
    pub fn muted(&self, mode: ColorMode) -> Style {
        match mode {
            ColorMode::NoColor => Style::default().add_modifier(Modifier::DIM),
            _ => self.fg(self.ui.muted, mode),
        }
    }
    pub fn accent(&self, mode: ColorMode) -> Style {
        self.fg(self.ui.accent, mode).add_modifier(Modifier::BOLD)
    }
    pub fn error(&self, mode: ColorMode) -> Style {
        self.fg(self.ui.error, mode).add_modifier(Modifier::BOLD)
    }
    pub fn border(&self, focused: bool, mode: ColorMode) -> Style {
        match (mode, focused) {
            (ColorMode::NoColor, true) => Style::default().add_modifier(Modifier::BOLD),
            (ColorMode::NoColor, false) => Style::default(),
            (_, true) => self.fg(self.ui.border_focus, mode).add_modifier(Modifier::BOLD),
            (_, false) => self.fg(self.ui.border, mode),
        }
    }
    /// Highlight of the current selection.
    pub fn selected(&self, mode: ColorMode) -> Style {
        match mode {
            ColorMode::NoColor => Style::default().add_modifier(Modifier::REVERSED),
            _ => Style::default().bg(paint(self.ui.selected_bg, mode)).add_modifier(Modifier::BOLD),
        }
    }
    /// A solid colour block (gauges, bars), or reverse video without colour.
    pub fn block(&self, c: Rgb, mode: ColorMode) -> Style {
        match mode {
            ColorMode::NoColor => Style::default().add_modifier(Modifier::REVERSED),
            _ => Style::default().fg(paint(c, mode)),
        }
    }
}

/// Converts an RGB colour for the terminal's capabilities.
pub fn paint(c: Rgb, mode: ColorMode) -> Color {
    match mode {
        ColorMode::TrueColor => Color::Rgb(c.0, c.1, c.2),
        ColorMode::Ansi256 => Color::Indexed(to_ansi256(c)),
        ColorMode::NoColor => Color::Reset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_themes_parse_and_differ() {
        let t = Theme::builtin();
        let names: Vec<&str> = t.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["dark", "light", "colorblind"]);
        assert_ne!(t[0].heat_rgb(1.0, false), t[1].heat_rgb(1.0, false));
    }

    #[test]
    fn colour_maps_interpolate_between_stops() {
        let t = Theme::parse(
            r##"name = "x"
positive = ["#000000", "#ffffff"]
signed = ["#0000ff", "#000000", "#ff0000"]
[ui]
fg = "#ffffff"
bg = "#000000"
muted = "#808080"
accent = "#ffff00"
border = "#404040"
border_focus = "#ffff00"
selected_bg = "#202020"
error = "#ff0000"
ok = "#00ff00"
edit = "#00ff00"
nav = "#0000ff"
bar = "#0000ff"
"##,
        )
        .unwrap();
        assert_eq!(t.heat_rgb(0.5, false), Rgb(128, 128, 128));
        assert_eq!(t.heat_rgb(-1.0, true), Rgb(0, 0, 255));
        assert_eq!(t.heat_rgb(0.0, true), Rgb(0, 0, 0));
        assert_eq!(t.heat_rgb(0.5, true), Rgb(128, 0, 0));
        // Bright cells get black text, dark cells white text.
        assert_eq!(t.heat_style(Some(1.0), false, ColorMode::TrueColor).fg, Some(Color::Rgb(0, 0, 0)));
        assert_eq!(t.heat_style(Some(0.0), false, ColorMode::TrueColor).fg, Some(Color::Rgb(255, 255, 255)));
        let nc = t.heat_style(Some(0.9), false, ColorMode::NoColor);
        assert!(nc.add_modifier.contains(Modifier::REVERSED) && nc.bg.is_none());
    }

    #[test]
    fn bad_theme_files_are_reported_not_fatal() {
        assert!(Theme::parse("name = \"x\"\npositive = [\"#12\"]").unwrap_err().to_string().contains("#rrggbb"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("broken.toml"), "name = 3").unwrap();
        let mut custom = include_str!("../../themes/dark.toml").replace("name = \"dark\"", "name = \"mine\"");
        custom = custom.replace("#ffc24a", "#00ff00");
        std::fs::write(dir.path().join("mine.toml"), custom).unwrap();
        let (themes, warnings) = Theme::load_all(Some(dir.path()));
        assert_eq!(themes.len(), 4);
        assert_eq!(themes[3].name, "mine");
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("broken.toml"));
    }

    #[test]
    fn colour_modes() {
        assert_eq!(ColorMode::from_env(Some("1"), Some("truecolor")), ColorMode::NoColor);
        assert_eq!(ColorMode::from_env(Some(""), Some("24bit")), ColorMode::TrueColor);
        assert_eq!(ColorMode::from_env(None, None), ColorMode::Ansi256);
        assert_eq!(to_ansi256(Rgb(255, 0, 0)), 196);
        assert_eq!(to_ansi256(Rgb(0, 0, 0)), 16);
        assert_eq!(to_ansi256(Rgb(128, 128, 128)), 244);
        assert_eq!(paint(Rgb(1, 2, 3), ColorMode::TrueColor), Color::Rgb(1, 2, 3));
    }
}
