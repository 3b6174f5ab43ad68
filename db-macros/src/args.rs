//! The attribute's arguments: nothing, or `fixtures("name", …)` naming SQL files to load.

use proc_macro2::TokenStream;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{LitStr, Token};

const USAGE: &str = "`#[db::test]` takes no arguments or `fixtures(\"name\", …)`, which loads \
                     tests/fixtures/<name>.sql of this crate before the test";

/// What `#[db::test(…)]` asked for.
#[derive(Default)]
pub(crate) struct Args {
    /// Fixture names in the order written, each to be loaded from `tests/fixtures/<name>.sql`.
    pub(crate) fixtures: Vec<LitStr>,
}

/// Parses the tokens between the attribute's parentheses.
pub(crate) fn parse_args(tokens: TokenStream) -> syn::Result<Args> {
    let mut args = Args::default();
    let parser = syn::meta::parser(|meta| {
        if !meta.path.is_ident("fixtures") {
            return Err(meta.error(USAGE));
        }
        let content;
        syn::parenthesized!(content in meta.input);
        let names = Punctuated::<LitStr, Token![,]>::parse_terminated(&content)?;
        if names.is_empty() {
            return Err(meta.error("`fixtures(…)` names at least one fixture: `fixtures(\"projects\")` loads tests/fixtures/projects.sql"));
        }
        for name in names {
            check_fixture_name(&name)?;
            args.fixtures.push(name);
        }
        Ok(())
    });
    parser.parse2(tokens)?;
    Ok(args)
}

/// The name is the file's stem, so that the path in the error of a missing fixture is the
/// one the developer has to create.
fn check_fixture_name(name: &LitStr) -> syn::Result<()> {
    let value = name.value();
    if value.trim().is_empty() {
        return Err(syn::Error::new(
            name.span(),
            "a fixture name is the stem of tests/fixtures/<name>.sql: it cannot be empty",
        ));
    }
    if let Some(stem) = value.strip_suffix(".sql") {
        return Err(syn::Error::new(
            name.span(),
            format!(
                "write the fixture's name without `.sql`: `fixtures(\"{stem}\")` loads tests/fixtures/{stem}.sql"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    fn error_of(tokens: TokenStream) -> String {
        match parse_args(tokens) {
            Ok(args) => panic!("accepted {} fixtures", args.fixtures.len()),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn no_arguments_mean_no_fixtures() {
        assert!(parse_args(TokenStream::new()).unwrap().fixtures.is_empty());
    }

    #[test]
    fn fixtures_keep_the_order_written_across_repeated_lists() {
        let args = parse_args(quote!(fixtures("projects", "more",), fixtures("last"))).unwrap();
        let names: Vec<String> = args.fixtures.iter().map(LitStr::value).collect();
        assert_eq!(names, ["projects", "more", "last"]);
    }

    #[test]
    fn an_unknown_argument_names_the_ones_there_are() {
        assert_eq!(error_of(quote!(migrations = false)), USAGE);
        assert_eq!(error_of(quote!(fixture("projects"))), USAGE);
    }

    #[test]
    fn fixture_names_are_string_literals_without_extension() {
        assert_eq!(
            error_of(quote!(fixtures(projects))),
            "expected string literal"
        );
        assert_eq!(
            error_of(quote!(fixtures("projects.sql"))),
            "write the fixture's name without `.sql`: `fixtures(\"projects\")` loads tests/fixtures/projects.sql"
        );
        assert!(error_of(quote!(fixtures(""))).contains("cannot be empty"));
        assert!(error_of(quote!(fixtures())).contains("at least one fixture"));
    }
}
