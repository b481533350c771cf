//! A byte-progress bar on stderr, hidden when stderr is not a terminal.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Progress through a file being written, in bytes.
pub(crate) struct ByteBar {
    bar: ProgressBar,
}

impl ByteBar {
    /// A bar labelled `what`; draws only on a terminal.
    pub(crate) fn new(what: &str) -> Self {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{what} [{{elapsed_precise}}] {{bar:30}} {{bytes}}/{{total_bytes}} ({{eta}}) {{wide_msg}}"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        ByteBar { bar }
    }

    /// Sets the position, total and current item.
    pub(crate) fn update(&mut self, done: u64, total: u64, item: &str) {
        self.bar.set_length(total);
        self.bar.set_position(done);
        self.bar.set_message(item.to_owned());
    }

    /// Clears the bar.
    pub(crate) fn finish(self) {
        self.bar.finish_and_clear();
    }
}
