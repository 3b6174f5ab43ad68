//! The one place passwords are masked: in a database URL, in free text that quotes URLs, in a
//! message that may echo a known password, and in a PostgreSQL server log line.
//!
//! Everything here works on text and never parses strictly, because the URLs and messages that
//! most need masking are the ones that failed to parse.

/// What a hidden password is replaced with.
pub const MASK: &str = "***";

/// Returns `url` with any password replaced by `***`, e.g.
/// `postgres://app:secret@host/db` becomes `postgres://app:***@host/db`.
///
/// A `password=` or `sslpassword=` query or key/value parameter is masked as well; the rest of the
/// text is kept as it is.
///
/// ```
/// assert_eq!(
///     dbops_common::redact::redact_url("postgres://app:secret@127.0.0.1:5432/app?sslmode=disable"),
///     "postgres://app:***@127.0.0.1:5432/app?sslmode=disable"
/// );
/// ```
pub fn redact_url(url: &str) -> String {
    let redacted = match url.find("://") {
        Some(scheme_end) => {
            let (scheme, rest) = url.split_at(scheme_end + 3);
            format!("{scheme}{}", redact_userinfo(rest))
        }
        None => url.to_owned(),
    };
    redact_password_parameters(&redacted)
}

/// Masks the password in `user:password@host…`; the last `@` before the query
/// ends the user info, so a password containing `@` or `/` is still covered.
fn redact_userinfo(after_scheme: &str) -> String {
    let query_start = after_scheme.find('?').unwrap_or(after_scheme.len());
    let Some(at) = after_scheme[..query_start].rfind('@') else {
        return after_scheme.to_owned();
    };
    let (userinfo, host_and_rest) = after_scheme.split_at(at);
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{user}:{MASK}{host_and_rest}"),
        None => after_scheme.to_owned(),
    }
}

/// Masks `password=…` and `sslpassword=…` up to the next `&` or whitespace, case-insensitively,
/// where the key starts the text or follows `?`, `&`, a space or a tab.
fn redact_password_parameters(text: &str) -> String {
    const KEY: &str = "password=";
    const SSL_PREFIX: &str = "ssl";
    let lowercase = text.to_ascii_lowercase();
    let mut redacted = String::with_capacity(text.len());
    let mut copied_up_to = 0;
    let mut search_from = 0;
    while let Some(found) = lowercase[search_from..].find(KEY) {
        let password_start = search_from + found;
        let value_start = password_start + KEY.len();
        let key_start = if lowercase[..password_start].ends_with(SSL_PREFIX) {
            password_start - SSL_PREFIX.len()
        } else {
            password_start
        };
        let preceded_by_separator =
            key_start == 0 || matches!(text.as_bytes()[key_start - 1], b'?' | b'&' | b' ' | b'\t');
        let value_end = text[value_start..]
            .find(|c: char| c == '&' || c.is_whitespace())
            .map_or(text.len(), |offset| value_start + offset);
        if preceded_by_separator {
            redacted.push_str(&text[copied_up_to..value_start]);
            redacted.push_str(MASK);
            copied_up_to = value_end;
        }
        search_from = value_end.max(value_start);
    }
    redacted.push_str(&text[copied_up_to..]);
    redacted
}

/// The raw password in `url` (still percent-encoded), if it has one, so that messages from
/// libraries can be scrubbed of it even when they quote the URL in some other form.
pub fn password_of(url: &str) -> Option<String> {
    let after_scheme = &url[url.find("://")? + 3..];
    let query_start = after_scheme.find('?').unwrap_or(after_scheme.len());
    let userinfo = &after_scheme[..after_scheme[..query_start].rfind('@')?];
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then(|| password.to_owned())
}

/// Masks `url`'s password wherever `message` quotes it as user info (`:password@`),
/// e.g. inside a URL a library echoed back in some other form. Only that form is
/// replaced: a short password like `app` must not mangle words such as "applied".
///
/// ```
/// use dbops_common::redact::scrub_password;
/// let url = "postgres://app:app@host/db";
/// assert_eq!(scrub_password("applied; postgres://app:app@host", url), "applied; postgres://app:***@host");
/// ```
pub fn scrub_password(message: &str, url: &str) -> String {
    match password_of(url) {
        Some(password) => message.replace(&format!(":{password}@"), &format!(":{MASK}@")),
        None => message.to_owned(),
    }
}

/// Masks every occurrence of `password` in `message`, both as a URL carries it (`encoded`,
/// percent-encoded) and decoded, for messages that may quote it on its own. Unlike
/// [`scrub_password`] it also masks those letters inside other words, so use it where a leaked
/// password matters more than a mangled word.
///
/// ```
/// use dbops_common::redact::scrub_password_everywhere;
/// assert_eq!(scrub_password_everywhere("s@cret or s%40cret", "s%40cret"), "*** or ***");
/// ```
pub fn scrub_password_everywhere(message: &str, encoded: &str) -> String {
    if encoded.is_empty() {
        return message.to_owned();
    }
    let decoded = crate::database_url::percent_decode(encoded);
    message.replace(encoded, MASK).replace(&decoded, MASK)
}

/// Masks the password of every `scheme://user:password@` in free text, such as a child's error.
///
/// ```
/// assert_eq!(
///     dbops_common::redact::redact_text("failed: postgres://app:hunter2@db:5432/app"),
///     "failed: postgres://app:***@db:5432/app"
/// );
/// ```
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..=colon]);
                out.push_str(MASK);
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    out
}

/// Masks what a server log may carry: URL passwords, and the literal after `PASSWORD` in a
/// logged statement such as a failed `ALTER ROLE`, however it is quoted: `'…'`, `E'…'` or
/// `$tag$…$tag$`. An unterminated literal is masked to the end of the line.
pub fn redact_log_line(line: &str) -> String {
    let line = redact_text(line);
    let lower = line.to_ascii_lowercase();
    let mut out = String::with_capacity(line.len());
    let mut copied = 0;
    let mut search = 0;
    while let Some(found) = lower[search..].find("password") {
        let keyword_end = search + found + "password".len();
        let literal_start =
            keyword_end + (line[keyword_end..].len() - line[keyword_end..].trim_start().len());
        search = keyword_end;
        if let Some((body_start, body_end)) = literal_body(&line[literal_start..]) {
            out.push_str(&line[copied..literal_start + body_start]);
            out.push_str(MASK);
            copied = literal_start + body_end;
            search = copied.max(keyword_end);
        }
    }
    out.push_str(&line[copied..]);
    out
}

/// Where the body of the SQL string literal opening `text` starts and ends.
fn literal_body(text: &str) -> Option<(usize, usize)> {
    let bytes = text.as_bytes();
    let (start, backslash_escapes) = match bytes {
        [b'\'', ..] => (1, false),
        [b'E' | b'e', b'\'', ..] => (2, true),
        [b'$', ..] => {
            let tag_len = bytes[1..].iter().position(|b| *b == b'$')? + 2;
            let tag = &text[..tag_len];
            if !tag[1..tag_len - 1]
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_')
            {
                return None;
            }
            let end = text[tag_len..]
                .find(tag)
                .map_or(text.len(), |e| tag_len + e);
            return Some((tag_len, end));
        }
        _ => return None,
    };
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if backslash_escapes => i += 2,
            b'\'' if bytes.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return Some((start, i)),
            _ => i += 1,
        }
    }
    Some((start, text.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_the_password_in_the_user_info() {
        assert_eq!(
            redact_url("postgres://app:secret@127.0.0.1:5432/app"),
            "postgres://app:***@127.0.0.1:5432/app"
        );
    }

    #[test]
    fn leaves_urls_without_password_alone() {
        assert_eq!(
            redact_url("postgres://app@host/db"),
            "postgres://app@host/db"
        );
        assert_eq!(redact_url("postgres://host/db"), "postgres://host/db");
    }

    #[test]
    fn masks_passwords_containing_url_delimiters() {
        assert_eq!(
            redact_url("postgres://app:p@ss/w:rd@host/db"),
            "postgres://app:***@host/db"
        );
    }

    #[test]
    fn masks_password_parameters() {
        assert_eq!(
            redact_url("postgres://host/db?user=app&password=secret&sslmode=disable"),
            "postgres://host/db?user=app&password=***&sslmode=disable"
        );
        assert_eq!(
            redact_url("host=db user=app PASSWORD=secret"),
            "host=db user=app PASSWORD=***"
        );
        assert_eq!(
            redact_url(
                "postgres://app:hunter2@localhost:5432/app?sslmode=disable&password=hunter2"
            ),
            "postgres://app:***@localhost:5432/app?sslmode=disable&password=***"
        );
    }

    #[test]
    fn masks_a_client_key_passphrase_but_not_lookalike_keys() {
        assert_eq!(
            redact_url("postgres://h/db?sslpassword=secret&sslmode=verify-full"),
            "postgres://h/db?sslpassword=***&sslmode=verify-full"
        );
        assert_eq!(
            redact_url("postgres://h/db?SSLPASSWORD=secret"),
            "postgres://h/db?SSLPASSWORD=***"
        );
        assert_eq!(
            redact_url("postgres://h/db?xsslpassword=1&mypassword=2"),
            "postgres://h/db?xsslpassword=1&mypassword=2"
        );
    }

    #[test]
    fn masks_malformed_urls() {
        assert_eq!(redact_url("postgres://app:secret@"), "postgres://app:***@");
    }

    #[test]
    fn scrubs_the_password_from_free_text() {
        assert_eq!(
            scrub_password("bad url app:secret@host", "postgres://app:secret@host/db"),
            "bad url app:***@host"
        );
        assert_eq!(
            scrub_password("applied m1", "postgres://app:app@host/db"),
            "applied m1"
        );
        assert_eq!(password_of("postgres://app@host/db"), None);
    }

    #[test]
    fn scrubs_every_form_of_a_known_password() {
        assert_eq!(
            scrub_password_everywhere("auth failed for s@cret\nand s%40cret", "s%40cret"),
            "auth failed for ***\nand ***"
        );
        assert_eq!(scrub_password_everywhere("as is", ""), "as is");
    }

    #[test]
    fn free_text_is_redacted() {
        let text = "failed: postgres://app:hunter2@db:5432/app and http://x.org/a and postgres://nouser@h/db";
        assert_eq!(
            redact_text(text),
            "failed: postgres://app:***@db:5432/app and http://x.org/a and postgres://nouser@h/db"
        );
    }

    #[test]
    fn log_lines_are_redacted() {
        assert_eq!(
            redact_log_line(
                "STATEMENT:  ALTER ROLE app PASSWORD 'hunter2' VALID UNTIL 'x'; -- postgres://a:b@h/d"
            ),
            "STATEMENT:  ALTER ROLE app PASSWORD '***' VALID UNTIL 'x'; -- postgres://a:***@h/d"
        );
        assert_eq!(
            redact_log_line("create user u with password 'p1' login"),
            "create user u with password '***' login"
        );
        assert_eq!(redact_log_line("password '"), "password '***");
        assert_eq!(
            redact_log_line(r"ALTER ROLE app PASSWORD E'hunter2\'x' LOGIN"),
            "ALTER ROLE app PASSWORD E'***' LOGIN"
        );
        assert_eq!(
            redact_log_line("ALTER ROLE app PASSWORD 'it''s hunter2' LOGIN"),
            "ALTER ROLE app PASSWORD '***' LOGIN"
        );
        assert_eq!(
            redact_log_line("ALTER ROLE app PASSWORD $$hunter2$$ LOGIN"),
            "ALTER ROLE app PASSWORD $$***$$ LOGIN"
        );
        assert_eq!(
            redact_log_line("ALTER ROLE app PASSWORD $q$hun'ter2$q$"),
            "ALTER ROLE app PASSWORD $q$***$q$"
        );
        assert_eq!(
            redact_log_line("FATAL:  password authentication failed for user \"app\""),
            "FATAL:  password authentication failed for user \"app\""
        );
    }
}
