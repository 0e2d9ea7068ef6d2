//! HS256 JSON Web Tokens (RFC 7519), the only algorithm Herald accepts.
//!
//! Written out rather than pulled from a general JWT library so that the one
//! thing that matters is plain to see: the header must say HS256 (no `none`,
//! no algorithm confusion), the signature is checked in constant time before
//! anything in the claims is trusted, and `exp` is mandatory.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// What a token says about its holder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Issued at, unix seconds.
    pub iat: i64,
    /// Expires at, unix seconds.
    pub exp: i64,
    /// Topic names or `*` patterns the holder may subscribe to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<String>,
    /// Topic names or patterns the holder may publish to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<String>,
    /// Whether the holder may message other users directly.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub direct: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("token is not signed with HS256")]
    WrongAlgorithm,
    #[error("bad token signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
}

const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

fn mac(secret: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length")
}

/// Signs `claims` with `secret`.
pub fn sign(claims: &Claims, secret: &[u8]) -> String {
    let header = URL_SAFE_NO_PAD.encode(HEADER);
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialise"));
    let signing_input = format!("{header}.{body}");
    let mut m = mac(secret);
    m.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

/// Checks `token`'s signature and expiry at time `now` (unix seconds) and
/// returns its claims.
pub fn verify(token: &str, secret: &[u8], now: i64) -> Result<Claims, TokenError> {
    let mut parts = token.split('.');
    let (Some(header_b64), Some(body), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let header: Header = URL_SAFE_NO_PAD
        .decode(header_b64)
        .ok()
        .and_then(|h| serde_json::from_slice(&h).ok())
        .ok_or(TokenError::Malformed)?;
    if header.alg != "HS256" {
        return Err(TokenError::WrongAlgorithm);
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| TokenError::Malformed)?;
    let mut m = mac(secret);
    m.update(&token.as_bytes()[..header_b64.len() + 1 + body.len()]);
    m.verify_slice(&signature)
        .map_err(|_| TokenError::BadSignature)?;
    let claims: Claims = URL_SAFE_NO_PAD
        .decode(body)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(TokenError::Malformed)?;
    if claims.exp <= now {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims {
            sub: "u1".into(),
            iat: 100,
            exp,
            topics: vec!["match-*".into()],
            publish: vec![],
            direct: false,
        }
    }

    #[test]
    fn a_signed_token_verifies_and_keeps_its_claims() {
        let token = sign(&claims(200), b"secret");
        assert_eq!(verify(&token, b"secret", 150), Ok(claims(200)));
    }

    #[test]
    fn refuses_expired_wrong_key_tampered_and_unsigned_tokens() {
        let token = sign(&claims(200), b"secret");
        assert_eq!(verify(&token, b"secret", 200), Err(TokenError::Expired));
        assert_eq!(verify(&token, b"other", 150), Err(TokenError::BadSignature));

        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(br#"{"sub":"admin","iat":1,"exp":999}"#);
        parts[1] = &forged;
        assert_eq!(
            verify(&parts.join("."), b"secret", 150),
            Err(TokenError::BadSignature)
        );

        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(br#"{"sub":"u1","iat":1,"exp":999}"#)
        );
        assert_eq!(
            verify(&none, b"secret", 150),
            Err(TokenError::WrongAlgorithm)
        );
        assert_eq!(verify("abc", b"secret", 150), Err(TokenError::Malformed));
        assert_eq!(
            verify("a.b.c.d", b"secret", 150),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn interoperates_with_a_standard_hs256_token() {
        // Signed outside this code, with Python's hmac over the RFC 7519
        // signing input of {"sub":"u1","iat":1,"exp":4102444800} and key "secret".
        let token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MSIsImlhdCI6MSwiZXhwIjo0MTAyNDQ0ODAwfQ.w_LetQtw6o2JC59_i6FNtmjFMRzbHUaZUxBSvWEHMnA";
        let c = verify(token, b"secret", 1000).unwrap();
        assert_eq!(c.sub, "u1");
        assert_eq!(c.exp, 4102444800);
    }
}
