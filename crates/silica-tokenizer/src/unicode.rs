//! Codepoint classes, GPT-2's byte ↔ character table and the BPE pre-tokenizer splitters, each reproducing
//! llama.cpp `src/unicode.cpp` (`unicode_cpt_flags`, `unicode_byte_to_utf8`, `unicode_regex_split` and its
//! `unicode_regex_split_custom_*` functions) so that words split exactly where llama.cpp splits them.

use unicode_general_category::{GeneralCategory, get_general_category};

/// A codepoint's class bits, as llama.cpp's `unicode_cpt_flags` (generated from UnicodeData.txt by
/// `scripts/gen-unicode-data.py`): exactly one general-category bit, plus the White_Space bit. The value `0`
/// stands for "outside the current word", which llama.cpp's splitters test for with `as_uint() == 0`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CptFlags(u16);

impl CptFlags {
    const UNDEFINED: u16 = 0x0001;
    const NUMBER: u16 = 0x0002;
    const LETTER: u16 = 0x0004;
    const SEPARATOR: u16 = 0x0008;
    const MARK: u16 = 0x0010;
    const PUNCTUATION: u16 = 0x0020;
    const SYMBOL: u16 = 0x0040;
    const CONTROL: u16 = 0x0080;
    const WHITESPACE: u16 = 0x0100;

    /// The flags of `c`. Category groups follow gen-unicode-data.py: Cn → undefined; Cc, Cf, Co, Cs → control;
    /// L* → letter; M* → mark; N* → number; P* → punctuation; S* → symbol; Z* → separator.
    pub(crate) fn of(c: char) -> Self {
        use GeneralCategory as G;
        let cat = match get_general_category(c) {
            G::Unassigned => Self::UNDEFINED,
            G::Control | G::Format | G::PrivateUse | G::Surrogate => Self::CONTROL,
            G::LowercaseLetter
            | G::ModifierLetter
            | G::OtherLetter
            | G::TitlecaseLetter
            | G::UppercaseLetter => Self::LETTER,
            G::SpacingMark | G::EnclosingMark | G::NonspacingMark => Self::MARK,
            G::DecimalNumber | G::LetterNumber | G::OtherNumber => Self::NUMBER,
            G::ConnectorPunctuation
            | G::DashPunctuation
            | G::ClosePunctuation
            | G::FinalPunctuation
            | G::InitialPunctuation
            | G::OtherPunctuation
            | G::OpenPunctuation => Self::PUNCTUATION,
            G::CurrencySymbol | G::ModifierSymbol | G::MathSymbol | G::OtherSymbol => Self::SYMBOL,
            G::LineSeparator | G::ParagraphSeparator | G::SpaceSeparator => Self::SEPARATOR,
            // the enum is non-exhaustive; a category added later has no llama.cpp counterpart
            _ => Self::UNDEFINED,
        };
        let cat = if is_unicode_16_addition(c) {
            Self::UNDEFINED
        } else {
            cat
        };
        let ws = if is_whitespace(c) { Self::WHITESPACE } else { 0 };
        CptFlags(cat | ws)
    }

    pub(crate) fn is_letter(self) -> bool {
        self.0 & Self::LETTER != 0
    }
    pub(crate) fn is_number(self) -> bool {
        self.0 & Self::NUMBER != 0
    }
    pub(crate) fn is_whitespace(self) -> bool {
        self.0 & Self::WHITESPACE != 0
    }
    pub(crate) fn is_punctuation(self) -> bool {
        self.0 & Self::PUNCTUATION != 0
    }
    /// Whether any bit is set: false only for the "outside the word" value.
    pub(crate) fn any(self) -> bool {
        self.0 != 0
    }
}

/// Codepoint ranges first assigned in Unicode 16.0 (DerivedAge.txt, `Age=16.0`), inclusive. llama.cpp's
/// table is generated from Unicode 15.1 and leaves them unassigned, while `unicode-general-category` knows
/// Unicode 16.0; treating them as unassigned keeps the splits identical.
const UNICODE_16_ADDITIONS: [(u32, u32); 47] = [
    (0x00897, 0x00897),
    (0x01B4E, 0x01B4F),
    (0x01B7F, 0x01B7F),
    (0x01C89, 0x01C8A),
    (0x02427, 0x02429),
    (0x031E4, 0x031E5),
    (0x0A7CB, 0x0A7CD),
    (0x0A7DA, 0x0A7DC),
    (0x105C0, 0x105F3),
    (0x10D40, 0x10D65),
    (0x10D69, 0x10D85),
    (0x10D8E, 0x10D8F),
    (0x10EC2, 0x10EC4),
    (0x10EFC, 0x10EFC),
    (0x11380, 0x11389),
    (0x1138B, 0x1138B),
    (0x1138E, 0x1138E),
    (0x11390, 0x113B5),
    (0x113B7, 0x113C0),
    (0x113C2, 0x113C2),
    (0x113C5, 0x113C5),
    (0x113C7, 0x113CA),
    (0x113CC, 0x113D5),
    (0x113D7, 0x113D8),
    (0x113E1, 0x113E2),
    (0x116D0, 0x116E3),
    (0x11BC0, 0x11BE1),
    (0x11BF0, 0x11BF9),
    (0x11F5A, 0x11F5A),
    (0x13460, 0x143FA),
    (0x16100, 0x16139),
    (0x16D40, 0x16D79),
    (0x18CFF, 0x18CFF),
    (0x1CC00, 0x1CCF9),
    (0x1CD00, 0x1CEB3),
    (0x1E5D0, 0x1E5FA),
    (0x1E5FF, 0x1E5FF),
    (0x1F8B2, 0x1F8BB),
    (0x1F8C0, 0x1F8C1),
    (0x1FA89, 0x1FA89),
    (0x1FA8F, 0x1FA8F),
    (0x1FABE, 0x1FABE),
    (0x1FAC6, 0x1FAC6),
    (0x1FADC, 0x1FADC),
    (0x1FADF, 0x1FADF),
    (0x1FAE9, 0x1FAE9),
    (0x1FBCB, 0x1FBEF),
];

fn is_unicode_16_addition(c: char) -> bool {
    let u = c as u32;
    UNICODE_16_ADDITIONS
        .binary_search_by(|&(lo, hi)| {
            if hi < u {
                std::cmp::Ordering::Less
            } else if lo > u {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// Unicode White_Space (PropList.txt), the set llama.cpp's `unicode_set_whitespace` lists.
pub(crate) fn is_whitespace(c: char) -> bool {
    matches!(
        c,
        '\u{09}'..='\u{0D}'
            | ' '
            | '\u{85}'
            | '\u{A0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200A}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202F}'
            | '\u{205F}'
            | '\u{3000}'
    )
}

/// Whether GPT-2's `bytes_to_unicode` keeps byte `b` as the character of the same value (the printable
/// ranges `!`..`~`, `¡`..`¬`, `®`..`ÿ`).
const fn byte_is_printable(b: u32) -> bool {
    (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
}

/// The 68 bytes GPT-2 remaps, in increasing order: byte `NON_PRINTABLE[i]` becomes `char(256 + i)`.
const NON_PRINTABLE: [u8; 68] = {
    let mut out = [0u8; 68];
    let mut n = 0;
    let mut b = 0u32;
    while b < 256 {
        if !byte_is_printable(b) {
            out[n] = b as u8;
            n += 1;
        }
        b += 1;
    }
    out
};

/// GPT-2's byte → character table (`bytes_to_unicode` in OpenAI's GPT-2 encoder; llama.cpp
/// `unicode_byte_to_utf8`).
const BYTE_TO_CHAR: [char; 256] = {
    let mut out = ['\0'; 256];
    let mut n = 0u32;
    let mut b = 0u32;
    while b < 256 {
        let cpt = if byte_is_printable(b) {
            b
        } else {
            n += 1;
            255 + n
        };
        out[b as usize] = match char::from_u32(cpt) {
            Some(c) => c,
            None => '\0',
        };
        b += 1;
    }
    out
};

/// The character GPT-2's byte-level encoding writes for byte `b` (how byte-level BPE vocabularies spell
/// bytes in `tokenizer.ggml.tokens`).
pub fn byte_to_char(b: u8) -> char {
    BYTE_TO_CHAR[b as usize]
}

/// The byte a GPT-2 byte-level character stands for (llama.cpp `unicode_utf8_to_byte`), or `None` for a
/// character outside the table.
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    let u = c as u32;
    if u < 256 && byte_is_printable(u) {
        Some(u as u8)
    } else if (256..256 + NON_PRINTABLE.len() as u32).contains(&u) {
        Some(NON_PRINTABLE[(u - 256) as usize])
    } else {
        None
    }
}

/// One stage of a BPE pre-tokenizer. Each stage splits every piece the previous stage produced; text between
/// matches becomes a piece of its own (llama.cpp `unicode_regex_split`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Split {
    /// GPT-2's `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)` as llama.cpp's
    /// `unicode_regex_split_custom_gpt2` implements it.
    Gpt2,
    /// Llama 3's `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    /// (`unicode_regex_split_custom_llama3`); with `max_digits` 1 it is Qwen 2's variant with `\p{N}`
    /// (`unicode_regex_split_custom_qwen2`).
    Llama3 {
        /// Longest digit group: 3 for Llama 3, 1 for Qwen 2.
        max_digits: usize,
    },
    /// `\p{N}`: every number codepoint on its own (SmolLM, StarCoder).
    EachDigit,
    /// `\p{N}+`: runs of number codepoints (llama.cpp's `default` pre-tokenizer).
    DigitRuns,
    /// `[\p{P}\$\+<=>\^~\|]+` (llama.cpp's `default` pre-tokenizer), matched on llama.cpp's collapsed text.
    PunctRuns,
    /// `[0-9][0-9][0-9]` (llama.cpp's `default` pre-tokenizer).
    ThreeDigits,
}

/// Splits `cpts` with each stage in turn and returns the piece lengths in codepoints (summing to
/// `cpts.len()`).
pub(crate) fn split(cpts: &[char], stages: &[Split]) -> Vec<usize> {
    let mut offsets = vec![cpts.len()];
    for stage in stages {
        let mut next = Vec::with_capacity(offsets.len() * 2);
        let mut start = 0;
        for &len in &offsets {
            let word = &cpts[start..start + len];
            start += len;
            match *stage {
                Split::Gpt2 => split_gpt2(word, &mut next),
                Split::Llama3 { max_digits } => split_llama3(word, max_digits, &mut next),
                Split::EachDigit => split_matches(word, &mut next, |w, i| {
                    CptFlags::of(w[i]).is_number().then_some(i + 1)
                }),
                Split::DigitRuns => split_matches(word, &mut next, |w, i| {
                    run_end(w, i, |c| CptFlags::of(c).is_number())
                }),
                Split::PunctRuns => split_matches(word, &mut next, |w, i| run_end(w, i, is_default_punct)),
                Split::ThreeDigits => split_matches(word, &mut next, |w, i| {
                    (i + 3 <= w.len() && w[i..i + 3].iter().all(char::is_ascii_digit)).then_some(i + 3)
                }),
            }
        }
        offsets = next;
    }
    offsets
}

/// Emulates llama.cpp's regex path on one piece: `matcher(word, i)` returns the end of a match starting at
/// `i`, leftmost first; unmatched stretches between matches are pieces too.
fn split_matches(word: &[char], out: &mut Vec<usize>, matcher: impl Fn(&[char], usize) -> Option<usize>) {
    let mut prev = 0;
    let mut i = 0;
    while i < word.len() {
        match matcher(word, i) {
            Some(end) if end > i => {
                if i > prev {
                    out.push(i - prev);
                }
                out.push(end - i);
                prev = end;
                i = end;
            }
            _ => i += 1,
        }
    }
    if word.len() > prev {
        out.push(word.len() - prev);
    }
}

fn run_end(word: &[char], i: usize, class: impl Fn(char) -> bool) -> Option<usize> {
    let n = word[i..].iter().take_while(|&&c| class(c)).count();
    (n > 0).then_some(i + n)
}

/// Membership in `[\p{P}\$\+<=>\^~\|]` over llama.cpp's collapsed text: ASCII characters keep their identity
/// (so only the ASCII punctuation listed in llama.cpp's category map and `$+<=>^~|` match), and a non-ASCII
/// codepoint matches when it is punctuation and not whitespace.
fn is_default_punct(c: char) -> bool {
    if c.is_ascii() {
        matches!(c, '!'..='#' | '%'..='*' | ','..='/' | ':'..=';' | '?'..='@' | '['..=']' | '_' | '{' | '}')
            || matches!(c, '$' | '+' | '<' | '=' | '>' | '^' | '~' | '|')
    } else {
        !is_whitespace(c) && CptFlags::of(c).is_punctuation()
    }
}

/// A word being split: reading past either end yields the "outside" values, as llama.cpp's `_get_cpt`
/// and `_get_flags` do.
struct Word<'a> {
    cpts: &'a [char],
    flags: Vec<CptFlags>,
}

impl<'a> Word<'a> {
    fn new(cpts: &'a [char]) -> Self {
        Word {
            cpts,
            flags: cpts.iter().map(|&c| CptFlags::of(c)).collect(),
        }
    }
    fn cpt(&self, pos: usize) -> Option<char> {
        self.cpts.get(pos).copied()
    }
    fn flags(&self, pos: usize) -> CptFlags {
        self.flags.get(pos).copied().unwrap_or_default()
    }
    fn len(&self) -> usize {
        self.cpts.len()
    }
    fn count_whitespace(&self, pos: usize) -> usize {
        (pos..self.len())
            .take_while(|&p| self.flags(p).is_whitespace())
            .count()
    }
}

/// The `'s|'t|'m|'d` / `'re|'ve|'ll` contraction at `pos`, returning its length; `fold` maps the letters
/// before comparing (identity for GPT-2, lowercase for Llama 3).
fn contraction(w: &Word<'_>, pos: usize, fold: impl Fn(char) -> char) -> Option<usize> {
    if w.cpt(pos) != Some('\'') || pos + 1 >= w.len() {
        return None;
    }
    let next = fold(w.cpt(pos + 1)?);
    if matches!(next, 's' | 't' | 'm' | 'd') {
        return Some(2);
    }
    if pos + 2 < w.len() {
        let next2 = fold(w.cpt(pos + 2)?);
        if matches!((next, next2), ('r', 'e') | ('v', 'e') | ('l', 'l')) {
            return Some(3);
        }
    }
    None
}

fn split_gpt2(cpts: &[char], out: &mut Vec<usize>) {
    let w = Word::new(cpts);
    let end = w.len();
    let mut prev = 0;
    let mut emit = |to: usize, out: &mut Vec<usize>| {
        if to > prev {
            out.push(to - prev);
        }
        prev = to;
    };
    let mut pos = 0;
    while pos < end {
        let cpt = w.cpts[pos];
        let flags = w.flags(pos);
        if let Some(n) = contraction(&w, pos, |c| c) {
            pos += n;
            emit(pos, out);
            continue;
        }
        let space = usize::from(cpt == ' ');
        let mut f2 = if cpt == ' ' { w.flags(pos + 1) } else { flags };
        // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`
        let classes: [fn(CptFlags) -> bool; 3] = [CptFlags::is_letter, CptFlags::is_number, |f| {
            !(f.is_whitespace() || f.is_letter() || f.is_number()) && f.any()
        }];
        if let Some(class) = classes.iter().find(|class| class(f2)) {
            pos += space;
            while class(f2) {
                pos += 1;
                f2 = w.flags(pos);
            }
            emit(pos, out);
            continue;
        }
        let n_ws = w.count_whitespace(pos);
        if n_ws > 1 && pos + n_ws < end {
            // `\s+(?!\S)`: leave the last space to prefix the next word
            pos += n_ws - 1;
        } else if n_ws > 0 {
            pos += n_ws;
        } else {
            pos += 1;
        }
        emit(pos, out);
    }
}

fn split_llama3(cpts: &[char], max_digits: usize, out: &mut Vec<usize>) {
    let w = Word::new(cpts);
    let end = w.len();
    let mut prev = 0;
    let mut emit = |to: usize, out: &mut Vec<usize>| {
        if to > prev {
            out.push(to - prev);
        }
        prev = to;
    };
    let mut pos = 0;
    while pos < end {
        let cpt = w.cpts[pos];
        let flags = w.flags(pos);
        // `(?i:'s|'t|'re|'ve|'m|'ll|'d)`: only ASCII letters lowercase to these
        if let Some(n) = contraction(&w, pos, |c| c.to_ascii_lowercase()) {
            pos += n;
            emit(pos, out);
            continue;
        }
        // `[^\r\n\p{L}\p{N}]?\p{L}+`
        if !(cpt == '\r' || cpt == '\n' || flags.is_number())
            && (flags.is_letter() || w.flags(pos + 1).is_letter())
        {
            pos += 1;
            while w.flags(pos).is_letter() {
                pos += 1;
            }
            emit(pos, out);
            continue;
        }
        // `\p{N}{1,3}` (Llama 3) or `\p{N}` (Qwen 2)
        if flags.is_number() {
            let mut ini = pos;
            while w.flags(pos).is_number() {
                pos += 1;
                if pos - ini >= max_digits {
                    emit(pos, out);
                    ini = pos;
                }
            }
            emit(pos, out);
            continue;
        }
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`; llama.cpp tests the first character's own flags here, not the
        // flags after the optional space
        let mut f2 = if cpt == ' ' { w.flags(pos + 1) } else { flags };
        let other = |f: CptFlags| !(f.is_whitespace() || f.is_letter() || f.is_number());
        if other(f2) && flags.any() {
            pos += usize::from(cpt == ' ');
            while other(f2) && f2.any() {
                pos += 1;
                f2 = w.flags(pos);
            }
            while matches!(w.cpt(pos), Some('\r' | '\n')) {
                pos += 1;
            }
            emit(pos, out);
            continue;
        }
        let n_ws = w.count_whitespace(pos);
        let last_newline_end = (pos..pos + n_ws)
            .rev()
            .find(|&p| matches!(w.cpts[p], '\r' | '\n'))
            .map(|p| p + 1);
        if let Some(e) = last_newline_end {
            // `\s*[\r\n]+`
            pos = e;
        } else if n_ws > 1 && pos + n_ws < end {
            // `\s+(?!\S)`
            pos += n_ws - 1;
        } else if n_ws > 0 {
            pos += n_ws;
        } else {
            pos += 1;
        }
        emit(pos, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(text: &str, stages: &[Split]) -> Vec<String> {
        let cpts: Vec<char> = text.chars().collect();
        let mut start = 0;
        split(&cpts, stages)
            .into_iter()
            .map(|n| {
                let s: String = cpts[start..start + n].iter().collect();
                start += n;
                s
            })
            .collect()
    }

    #[test]
    fn byte_table_is_a_bijection() {
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(byte_to_char(b)), Some(b));
        }
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(byte_to_char(b'a'), 'a');
        assert_eq!(char_to_byte('中'), None);
    }

    #[test]
    fn gpt2_splits() {
        assert_eq!(pieces("Hello world", &[Split::Gpt2]), ["Hello", " world"]);
        assert_eq!(
            pieces("I'm  fine!!", &[Split::Gpt2]),
            ["I", "'m", " ", " fine", "!!"]
        );
        assert_eq!(pieces("a  \n\n b", &[Split::Gpt2]), ["a", "  \n\n", " b"]);
        assert_eq!(pieces("x   ", &[Split::Gpt2]), ["x", "   "]);
        assert_eq!(pieces("abc123", &[Split::Gpt2]), ["abc", "123"]);
    }

    #[test]
    fn smollm_isolates_digits() {
        let stages = [Split::EachDigit, Split::Gpt2];
        assert_eq!(
            pieces("in 2024, ok", &stages),
            ["in", " ", "2", "0", "2", "4", ",", " ok"]
        );
    }

    #[test]
    fn llama3_splits() {
        let s = [Split::Llama3 { max_digits: 3 }];
        assert_eq!(pieces("12345 apples", &s), ["123", "45", " apples"]);
        assert_eq!(pieces("DON'T stop", &s), ["DON", "'T", " stop"]);
        assert_eq!(pieces("a  \n\n b", &s), ["a", "  \n\n", " b"]);
        assert_eq!(pieces("(hi)", &s), ["(hi", ")"]);
        let q = [Split::Llama3 { max_digits: 1 }];
        assert_eq!(pieces("x 123", &q), ["x", " ", "1", "2", "3"]);
    }

    #[test]
    fn default_stages() {
        let s = [
            Split::PunctRuns,
            Split::Gpt2,
            Split::DigitRuns,
            Split::ThreeDigits,
        ];
        assert_eq!(pieces("a, 12345", &s), ["a", ",", " ", "123", "45"]);
    }

    #[test]
    fn category_data_is_unicode_16() {
        // UNICODE_16_ADDITIONS maps this data back to llama.cpp's Unicode 15.1 table; a newer Unicode
        // version needs its additions listed too
        assert_eq!(unicode_general_category::UNICODE_VERSION, (16, 0, 0));
        assert_eq!(CptFlags::of('\u{0897}'), CptFlags(CptFlags::UNDEFINED)); // ARABIC PEPET, new in 16.0
        assert_eq!(CptFlags::of('\u{1C89}'), CptFlags(CptFlags::UNDEFINED));
        assert!(CptFlags::of('\u{1C88}').is_letter());
        // so llama.cpp splits before U+1C89 where a Unicode 16 regex would not
        assert_eq!(
            pieces("ab\u{1C89}cd \u{1C88}x", &[Split::Llama3 { max_digits: 3 }]),
            ["ab", "\u{1C89}cd", " \u{1C88}x"]
        );
    }

    #[test]
    fn categories() {
        assert!(CptFlags::of('é').is_letter());
        assert!(CptFlags::of('中').is_letter());
        assert!(CptFlags::of('٣').is_number());
        assert!(CptFlags::of('\u{3000}').is_whitespace());
        assert!(!CptFlags::of('😀').is_letter());
        assert!(CptFlags::of('😀').any());
        assert!(!CptFlags::default().any());
    }
}
