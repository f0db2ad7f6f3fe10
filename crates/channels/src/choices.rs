//! What the channels share in rendering a message's choices (the domain's `QuickReply`):
//! the plain-text listing for a channel without buttons, or for choices a channel's
//! buttons cannot hold, and cutting a title to a provider's limit.

use helpline_domain::QuickReply;

/// `text`, then one line per choice, so the customer can type the answer: `id – title`,
/// or the bare id where the title adds nothing. The bot reads typed ids as it reads taps.
pub(crate) fn text_with_options(text: &str, choices: &[QuickReply]) -> String {
    if choices.is_empty() {
        return text.to_owned();
    }
    let lines: Vec<String> = choices
        .iter()
        .map(|choice| {
            if choice.title.is_empty() || choice.title == choice.id {
                choice.id.clone()
            } else {
                format!("{} – {}", choice.id, choice.title)
            }
        })
        .collect();
    format!("{text}\n\n{}", lines.join("\n"))
}

/// What a button shows: the title, or the id where the bot gave none (providers refuse
/// empty labels).
pub(crate) fn label(choice: &QuickReply) -> &str {
    if choice.title.is_empty() {
        &choice.id
    } else {
        &choice.title
    }
}

/// `title` cut to `max_chars` characters, the last one an ellipsis when cut: providers
/// refuse longer titles rather than cutting them themselves.
pub(crate) fn fit(title: &str, max_chars: usize) -> String {
    match title.char_indices().nth(max_chars.saturating_sub(1)) {
        Some((end, _)) if title.chars().count() > max_chars => format!("{}…", &title[..end]),
        _ => title.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choice(id: &str, title: &str) -> QuickReply {
        QuickReply {
            id: id.to_owned(),
            title: title.to_owned(),
        }
    }

    #[test]
    fn options_follow_the_text_one_per_line() {
        let choices = [choice("1", "⭐"), choice("ja", "ja"), choice("2", "")];
        assert_eq!(
            text_with_options("Wie war es?", &choices),
            "Wie war es?\n\n1 – ⭐\nja\n2"
        );
        assert_eq!(text_with_options("Hallo", &[]), "Hallo");
    }

    #[test]
    fn titles_are_cut_on_a_char_boundary() {
        assert_eq!(fit("⭐⭐⭐⭐⭐", 20), "⭐⭐⭐⭐⭐");
        assert_eq!(fit(&"ü".repeat(20), 20), "ü".repeat(20));
        let cut = fit(&"ü".repeat(21), 20);
        assert_eq!(cut.chars().count(), 20);
        assert!(cut.ends_with('…'));
        assert_eq!(label(&choice("5", "")), "5");
        assert_eq!(label(&choice("5", "⭐")), "⭐");
    }
}
