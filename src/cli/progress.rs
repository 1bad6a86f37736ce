//! Progress bars on a terminal (fsck, rotate, backup, restore); nothing
//! when stderr is not one.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{HumanDuration, ProgressBar, ProgressState, ProgressStyle};

/// An estimate of the time left is shown only after this long and this
/// share of the work: before, the rate swings too much to mean anything.
const SETTLE_AFTER: Duration = Duration::from_secs(3);
const SETTLE_FRACTION: f32 = 0.02;

/// A bar drawing `template` on stderr, where `{eta_left}` is "12s left" once
/// the rate has settled and "estimating the time left" before.
pub fn bar(template: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template(template) {
        let style = style.progress_chars("=> ").with_key(
            "eta_left",
            |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = w.write_str(&eta_left(s.elapsed(), s.fraction(), s.eta()));
            },
        );
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn eta_left(elapsed: Duration, fraction: f32, eta: Duration) -> String {
    if elapsed < SETTLE_AFTER || fraction < SETTLE_FRACTION {
        return "estimating the time left".into();
    }
    format!("{:#} left", HumanDuration(eta))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_left_shows_only_once_the_rate_settles() {
        let s = Duration::from_secs;
        assert_eq!(eta_left(s(1), 0.5, s(1)), "estimating the time left", "too soon");
        assert_eq!(eta_left(s(60), 0.01, s(6000)), "estimating the time left", "too little done");
        assert_eq!(eta_left(s(10), 0.25, s(30)), "30s left");
    }
}
