//! Property-based fuzzing of the token parser and verifier: any text a
//! client presents gets an answer, never a panic; only a token signed with
//! the secret, HS256, unexpired, yields claims, and exactly the claims that
//! were signed.
//!
//! Runs `PROPTEST_CASES` cases per property (proptest's default, 256, in the
//! normal `cargo test`); a longer run is `PROPTEST_CASES=100000 cargo test -p
//! herald-authsvc --test jwt_fuzz` (docs/operations.md).

use authsvc::jwt::{Claims, TokenError, sign, verify};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;

const SECRET: &[u8] = b"fuzzing-secret-0123456789";
const NOW: i64 = 1_700_000_000;

fn claims() -> impl Strategy<Value = Claims> {
    (
        ".{0,24}",
        any::<i64>(),
        NOW + 1..i64::MAX,
        prop::collection::vec(".{0,12}", 0..4),
        prop::collection::vec(".{0,12}", 0..4),
        any::<bool>(),
    )
        .prop_map(|(sub, iat, exp, topics, publish, direct)| Claims {
            sub,
            iat,
            exp,
            topics,
            publish,
            direct,
        })
}

/// A dot-separated string of base64url segments of arbitrary bytes: gets
/// past the first checks more often than random text.
fn token_shaped() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 1..5).prop_map(|parts| {
        parts
            .iter()
            .map(|p| URL_SAFE_NO_PAD.encode(p))
            .collect::<Vec<_>>()
            .join(".")
    })
}

proptest! {
    #[test]
    fn any_text_gets_an_answer_and_no_claims(text in ".{0,256}") {
        prop_assert!(verify(&text, SECRET, NOW).is_err());
    }

    #[test]
    fn any_token_shaped_text_gets_an_answer_and_no_claims(token in token_shaped()) {
        prop_assert!(verify(&token, SECRET, NOW).is_err());
    }

    #[test]
    fn a_signed_token_verifies_to_exactly_its_claims(c in claims()) {
        let token = sign(&c, SECRET);
        prop_assert_eq!(verify(&token, SECRET, NOW), Ok(c.clone()));
        prop_assert_eq!(verify(&token, b"another-secret-0123456789", NOW), Err(TokenError::BadSignature));
        prop_assert_eq!(verify(&token, SECRET, c.exp), Err(TokenError::Expired));
    }

    /// Changing any one character of a good token never yields other
    /// claims: it is refused, or (never, with a canonical base64 decoder)
    /// verifies to the same claims.
    #[test]
    fn an_altered_token_never_yields_other_claims(
        c in claims(),
        at in any::<prop::sample::Index>(),
        with in prop::char::range('+', 'z'),
    ) {
        let token = sign(&c, SECRET);
        let mut chars: Vec<char> = token.chars().collect();
        let i = at.index(chars.len());
        prop_assume!(chars[i] != with);
        chars[i] = with;
        let altered: String = chars.into_iter().collect();
        if let Ok(got) = verify(&altered, SECRET, NOW) {
            prop_assert_eq!(got, c);
        }
    }

    /// A header naming anything but HS256 is refused even when the
    /// signature over it is right: no `none`, no algorithm confusion.
    #[test]
    fn only_hs256_is_accepted(alg in ".{0,12}", c in claims()) {
        prop_assume!(alg != "HS256");
        use hmac::{Hmac, Mac};
        let header = URL_SAFE_NO_PAD.encode(serde_json::json!({"alg": alg}).to_string());
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap());
        let input = format!("{header}.{body}");
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET).unwrap();
        mac.update(input.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        for token in [format!("{input}.{signature}"), format!("{input}.")] {
            prop_assert_eq!(verify(&token, SECRET, NOW), Err(TokenError::WrongAlgorithm));
        }
    }
}
