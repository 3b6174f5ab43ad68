//! Password redaction for database URLs, shared by the migration CLI and the `db` crate.

/// What a hidden password is replaced with.
const MASK: &str = "***";

/// Returns `url` with any password replaced by `***`, e.g.
/// `postgres://app:secret@host/db` becomes `postgres://app:***@host/db`.
///
/// Works on malformed input too (it never parses strictly), because the
/// URLs that most need redacting are the ones that failed to parse.
/// A `password=` query or key/value parameter is masked as well.
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

/// Masks `password=…` up to the next `&` or whitespace, case-insensitively.
fn redact_password_parameters(text: &str) -> String {
    const KEY: &str = "password=";
    let lowercase = text.to_ascii_lowercase();
    let mut redacted = String::with_capacity(text.len());
    let mut copied_up_to = 0;
    let mut search_from = 0;
    while let Some(found) = lowercase[search_from..].find(KEY) {
        let key_start = search_from + found;
        let value_start = key_start + KEY.len();
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

/// The raw password in `url`, if it has one, so that messages from libraries
/// can be scrubbed of it even when they quote the URL in some other form.
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
pub fn scrub_password(message: &str, url: &str) -> String {
    match password_of(url) {
        Some(password) => message.replace(&format!(":{password}@"), &format!(":{MASK}@")),
        None => message.to_owned(),
    }
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
}
