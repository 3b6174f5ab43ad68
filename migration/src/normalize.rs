//! The checksum of a migration's source, over its normalized text; shared by `build.rs`, which
//! compiles it into the binary, and the tests, which check that it is the file's.
//!
//! The source is split into Rust tokens with proc-macro2's tokenizer, which drops whitespace and
//! comments. Doc comments, which the tokenizer turns into `#[doc = "…"]` / `#![doc = "…"]`
//! attributes, are dropped as well, so no comment of any kind counts. The remaining tokens are
//! written exactly one space apart, punctuation included (`::` becomes `: :`), so no whitespace
//! outside literals counts either: where two punctuation characters touch, spacing never changes
//! the meaning of code that compiles. A comma right before a closing `)`, `]` or `}` is dropped,
//! because rustfmt adds or removes it as it wraps a list. Literals are kept exactly as written, so
//! any change inside a string, such as SQL text, counts; so does renaming or reordering anything,
//! `use` items included. One consequence: a one-element tuple `(x,)` and `(x)` normalize alike.
//!
//! The rendering is our own rather than proc-macro2's `Display`, so that a proc-macro2 release
//! that prints spacing differently cannot make every applied migration look edited.

use std::fmt::Write as _;
use std::str::FromStr;

use proc_macro2::{Delimiter, TokenStream, TokenTree};
use sha2::{Digest, Sha256};

/// The checksum recorded for a migration applied from `source`: the lowercase hex SHA-256 of
/// its normalized text.
pub fn source_checksum_of(source: &str) -> Result<String, proc_macro2::LexError> {
    let normalized = normalized_source(source)?;
    Ok(Sha256::digest(normalized.as_bytes()).iter().fold(
        String::with_capacity(64),
        |mut hex, byte| {
            write!(hex, "{byte:02x}").expect("writing to a String cannot fail");
            hex
        },
    ))
}

/// The normalized text of `source`, or why it is not valid Rust tokens (e.g. an unclosed string).
pub fn normalized_source(source: &str) -> Result<String, proc_macro2::LexError> {
    let tokens = TokenStream::from_str(source)?;
    let mut writer = TokenWriter::default();
    writer.write_stream(tokens, false);
    Ok(writer.text)
}

#[derive(Default)]
struct TokenWriter {
    text: String,
}

impl TokenWriter {
    fn write_stream(&mut self, tokens: TokenStream, inside_delimiters: bool) {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        let mut kept = Vec::with_capacity(tokens.len());
        let mut index = 0;
        while index < tokens.len() {
            match doc_attribute_length(&tokens[index..]) {
                Some(length) => index += length,
                None => {
                    kept.push(&tokens[index]);
                    index += 1;
                }
            }
        }
        // rustfmt adds or removes the comma before a closing delimiter as it wraps lists.
        if inside_delimiters
            && matches!(kept.last(), Some(TokenTree::Punct(punct)) if punct.as_char() == ',')
        {
            kept.pop();
        }
        for token in kept {
            self.write_token(token);
        }
    }

    fn write_token(&mut self, token: &TokenTree) {
        match token {
            TokenTree::Group(group) => {
                let (open, close) = match group.delimiter() {
                    Delimiter::Parenthesis => ("(", ")"),
                    Delimiter::Brace => ("{", "}"),
                    Delimiter::Bracket => ("[", "]"),
                    Delimiter::None => ("", ""),
                };
                self.write_word(open);
                self.write_stream(group.stream(), group.delimiter() != Delimiter::None);
                self.write_word(close);
            }
            TokenTree::Ident(ident) => self.write_word(&ident.to_string()),
            TokenTree::Literal(literal) => self.write_word(&literal.to_string()),
            TokenTree::Punct(punct) => self.write_word(punct.as_char().encode_utf8(&mut [0; 4])),
        }
    }

    fn write_word(&mut self, word: &str) {
        if word.is_empty() {
            return;
        }
        if !self.text.is_empty() {
            self.text.push(' ');
        }
        self.text.push_str(word);
    }
}

/// How many tokens the doc attribute starting `tokens` spans (`#`, optional `!`, `[doc = …]`), if it is one.
fn doc_attribute_length(tokens: &[TokenTree]) -> Option<usize> {
    let is_punct = |token: Option<&TokenTree>, expected: char| matches!(token, Some(TokenTree::Punct(punct)) if punct.as_char() == expected);
    if !is_punct(tokens.first(), '#') {
        return None;
    }
    let group_index = if is_punct(tokens.get(1), '!') { 2 } else { 1 };
    let Some(TokenTree::Group(group)) = tokens.get(group_index) else {
        return None;
    };
    if group.delimiter() != Delimiter::Bracket {
        return None;
    }
    let mut inside = group.stream().into_iter();
    let names_doc = matches!(inside.next(), Some(TokenTree::Ident(ident)) if ident == "doc");
    let assigns = is_punct(inside.next().as_ref(), '=');
    (names_doc && assigns).then_some(group_index + 1)
}
