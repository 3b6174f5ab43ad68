//! From `async fn name(db: DatabaseConnection) { … }` to a plain `#[test] fn name()` that hands
//! the body to `db_testing::__macro_support::run`; anything else is a compile error that says
//! what to write.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, LitStr, PatType, ReturnType, Signature, Type};

use crate::args::parse_args;

/// What every signature error ends with: the one shape the attribute accepts.
const WRITE: &str = "write `async fn name(db: DatabaseConnection)` (or `async fn name()`)";

/// The expansion, or the first error followed by the item as written, so that the error is the
/// only one the developer sees rather than a cascade about a missing function.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    match try_expand(args, item.clone()) {
        Ok(expanded) => expanded,
        Err(error) => {
            let mut tokens = error.to_compile_error();
            tokens.extend(item);
            tokens
        }
    }
}

pub(crate) fn try_expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let args = parse_args(args)?;
    let function: ItemFn = syn::parse2(item).map_err(|error| {
        syn::Error::new(
            error.span(),
            format!("`#[db::test]` goes on an async test function: {WRITE}"),
        )
    })?;
    check_attributes(&function)?;
    let argument = check_signature(&function.sig)?;
    Ok(test_function(&function, argument, &args.fixtures))
}

/// A second test attribute would make a second test (or a second runtime) of the same body.
fn check_attributes(function: &ItemFn) -> syn::Result<()> {
    for attribute in &function.attrs {
        let path = attribute.path();
        if path
            .segments
            .last()
            .is_some_and(|last| last.ident == "test")
        {
            return Err(syn::Error::new(
                attribute.span(),
                format!(
                    "remove `#[{}]`: `#[db::test]` already makes the function a test",
                    path.to_token_stream().to_string().replace(' ', "")
                ),
            ));
        }
    }
    Ok(())
}

/// The connection argument, if there is one; an error for every other shape.
fn check_signature(sig: &Signature) -> syn::Result<Option<&PatType>> {
    let fail = |spanned: &dyn ToTokens, why: &str| {
        Err(syn::Error::new_spanned(spanned, format!("{why}: {WRITE}")))
    };
    if sig.asyncness.is_none() {
        return fail(&sig.fn_token, "`#[db::test]` runs an async function");
    }
    if sig.constness.is_some() || sig.unsafety.is_some() || sig.abi.is_some() {
        return fail(sig, "a `#[db::test]` function is a plain `async fn`");
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return fail(&sig.generics, "a `#[db::test]` function has no generics");
    }
    if let ReturnType::Type(_, output) = &sig.output
        && !matches!(&**output, Type::Tuple(unit) if unit.elems.is_empty())
    {
        return fail(
            output,
            "a `#[db::test]` function returns nothing (fail with `unwrap`, `expect` or `assert!`)",
        );
    }
    if let Some(variadic) = &sig.variadic {
        return fail(
            variadic,
            "a `#[db::test]` function takes no variadic arguments",
        );
    }
    let mut inputs = sig.inputs.iter();
    let argument = match inputs.next() {
        None => None,
        Some(FnArg::Receiver(receiver)) => {
            return fail(receiver, "a `#[db::test]` function takes no `self`");
        }
        Some(FnArg::Typed(typed)) if matches!(*typed.ty, Type::Reference(_)) => {
            return fail(
                &typed.ty,
                "take the connection by value (a handle to the test database's pool, which lives until the test returns)",
            );
        }
        Some(FnArg::Typed(typed)) => Some(typed),
    };
    if let Some(extra) = inputs.next() {
        return fail(
            extra,
            "a `#[db::test]` function takes one argument, the connection",
        );
    }
    Ok(argument)
}

/// `#[test]` first, as `#[tokio::test]` does, so that the attributes written after it
/// (`#[ignore]`, `#[should_panic]`, docs) are read by the test harness.
fn test_function(
    function: &ItemFn,
    argument: Option<&PatType>,
    fixtures: &[LitStr],
) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = function;
    let name = &sig.ident;
    let parameter = match argument {
        Some(typed) => typed.to_token_stream(),
        None => quote!(_),
    };
    let fixtures = fixtures.iter().map(|fixture| {
        // At the name's span, so a missing file is reported on the name in the attribute.
        quote_spanned! {fixture.span()=>
            (#fixture, ::core::include_str!(::core::concat!(
                ::core::env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/", #fixture, ".sql"
            )))
        }
    });
    quote! {
        #[::core::prelude::v1::test]
        #(#attrs)*
        #vis fn #name() {
            ::db_testing::__macro_support::run(&[#(#fixtures),*], |#parameter| async move #block)
        }
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    fn error_of(args: TokenStream, item: TokenStream) -> String {
        match try_expand(args, item) {
            Ok(expanded) => panic!("expanded to {expanded}"),
            Err(error) => error.to_string(),
        }
    }

    fn rejection(item: TokenStream) -> String {
        error_of(TokenStream::new(), item)
    }

    /// Token streams print with spaces between tokens; comparing without them keeps the
    /// expectations readable.
    fn compact(tokens: TokenStream) -> String {
        tokens.to_string().split_whitespace().collect()
    }

    #[test]
    fn a_function_that_is_not_async_is_told_what_to_write() {
        assert_eq!(
            rejection(quote!(
                fn creates(db: DatabaseConnection) {}
            )),
            format!("`#[db::test]` runs an async function: {WRITE}")
        );
        // Emitted as a compile_error! in front of the item as written.
        let emitted = expand(
            TokenStream::new(),
            quote!(
                fn creates() {}
            ),
        )
        .to_string();
        assert!(emitted.contains("compile_error"), "{emitted}");
        assert!(emitted.contains("runs an async function"), "{emitted}");
    }

    #[test]
    fn wrong_signatures_are_each_named() {
        let cases = [
            (
                quote!(
                    async fn t(db: &DatabaseConnection) {}
                ),
                "take the connection by value",
            ),
            (
                quote!(
                    async fn t(db: DatabaseConnection, n: u8) {}
                ),
                "takes one argument",
            ),
            (
                quote!(
                    async fn t<C>(db: C) {}
                ),
                "has no generics",
            ),
            (
                quote!(
                    async fn t(db: DatabaseConnection) -> Result<(), DbErr> {
                        Ok(())
                    }
                ),
                "returns nothing",
            ),
            (
                quote!(
                    async unsafe fn t() {}
                ),
                "plain `async fn`",
            ),
            (
                quote!(
                    struct NotAFunction;
                ),
                "goes on an async test function",
            ),
        ];
        for (item, expected) in cases {
            let error = rejection(item.clone());
            assert!(error.contains(expected), "{item}: {error}");
            assert!(error.ends_with(WRITE), "{item}: {error}");
        }
    }

    #[test]
    fn a_second_test_attribute_is_refused() {
        for attribute in [quote!(#[test]), quote!(#[tokio::test])] {
            let error = rejection(quote!(#attribute async fn t() {}));
            let shown = compact(attribute);
            assert!(error.starts_with(&format!("remove `{shown}`")), "{error}");
        }
    }

    #[test]
    fn the_expansion_is_a_test_that_keeps_attributes_and_loads_fixtures_in_order() {
        let expanded = try_expand(
            quote!(fixtures("projects", "more")),
            quote! {
                /// Docs stay.
                #[should_panic(expected = "boom")]
                async fn lists(mut db: DatabaseConnection) { body(&db).await; }
            },
        )
        .unwrap();
        let fixture = |name: &str| {
            format!(
                "(\"{name}\",::core::include_str!(::core::concat!(::core::env!(\"CARGO_MANIFEST_DIR\"),\"/tests/fixtures/\",\"{name}\",\".sql\")))"
            )
        };
        let expected = format!(
            "#[::core::prelude::v1::test]#[doc=r\" Docs stay.\"]#[should_panic(expected=\"boom\")]fnlists(){{\
             ::db_testing::__macro_support::run(&[{},{}],|mutdb:DatabaseConnection|asyncmove{{body(&db).await;}})}}",
            fixture("projects"),
            fixture("more"),
        );
        let expected: String = expected.split_whitespace().collect();
        assert_eq!(compact(expanded), expected);
    }

    #[test]
    fn a_test_without_an_argument_ignores_the_connection() {
        let expanded = try_expand(
            TokenStream::new(),
            quote!(
                async fn runs() {}
            ),
        )
        .unwrap();
        assert!(
            compact(expanded).ends_with("run(&[],|_|asyncmove{})}"),
            "ignores the connection"
        );
    }
}
