//! An Apple attachment: where its ciphertext lies on MMCS and what opens it
//! (`APPLE-AND-NOTIFY.md` §1.7). Apple encrypts each file with AES-256-CTR under a key of
//! its own, counter starting at zero, and lists `"00"` + the key's hex beside the file.

use aes::cipher::{KeyIvInit, StreamCipher};
use base64::Engine;
use serde::{Deserialize, Serialize};

type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;

/// What the media consumer needs to fetch and open one attachment: kept, sealed, as the
/// message's media reference (it holds the file's key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentRef {
    /// The MMCS URL, exchanged at the gateway's `preDownload` for a download URL.
    pub url: String,
    pub owner: String,
    /// Hex, as Apple lists it; the gateway wants it Base64 (`MMCS-Signature`).
    pub signature: String,
    /// `00` + hex of the AES-256 key.
    pub key: String,
    /// Bytes of the ciphertext, when Apple said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

impl AttachmentRef {
    /// The reference as the message records it: JSON marked as Apple's.
    pub fn encode(&self) -> String {
        // Serializing a struct of strings cannot fail; an empty reference would only be
        // recorded as not fetchable.
        format!("apple:{}", serde_json::to_string(self).unwrap_or_default())
    }

    /// A reference [`AttachmentRef::encode`] made, or `None`.
    pub fn decode(recorded: &str) -> Option<Self> {
        serde_json::from_str(recorded.strip_prefix("apple:")?).ok()
    }

    /// `MMCS-Signature`: the signature's bytes in Base64.
    pub fn signature_base64(&self) -> Option<String> {
        hex::decode(&self.signature)
            .ok()
            .map(|bytes| base64::engine::general_purpose::STANDARD.encode(bytes))
    }
}

/// The file `ciphertext` holds, opened with `key` (`00` + 64 hex digits).
pub fn open_attachment(key: &str, ciphertext: &[u8]) -> Result<Vec<u8>, String> {
    let hex_key = key.strip_prefix("00").unwrap_or(key);
    let key = hex::decode(hex_key).map_err(|_| "the attachment's key is not hex".to_owned())?;
    if key.len() != 32 {
        return Err(format!(
            "the attachment's key has {} bytes, not 32",
            key.len()
        ));
    }
    let mut cipher = Aes256Ctr::new_from_slices(&key, &[0u8; 16])
        .map_err(|_| "the attachment's key was refused".to_owned())?;
    let mut plain = ciphertext.to_vec();
    cipher.apply_keystream(&mut plain);
    Ok(plain)
}

/// `bytes` sealed as Apple seals an attachment, with `key` (32 bytes): for the simulator
/// and tests. CTR is its own inverse.
pub fn seal_attachment(key: &[u8; 32], bytes: &[u8]) -> Vec<u8> {
    let mut sealed = bytes.to_vec();
    let mut cipher = Aes256Ctr::new(key.into(), &[0u8; 16].into());
    cipher.apply_keystream(&mut sealed);
    sealed
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn an_attachment_opens_with_its_key_and_no_other() {
        let key = [7u8; 32];
        let photo = b"\x89PNG\r\n\x1a\n a photo of the serial label".to_vec();
        let sealed = seal_attachment(&key, &photo);
        assert_ne!(sealed, photo);
        let wire_key = format!("00{}", hex::encode(key));
        assert_eq!(open_attachment(&wire_key, &sealed).unwrap(), photo);
        let other = format!("00{}", hex::encode([8u8; 32]));
        assert_ne!(open_attachment(&other, &sealed).unwrap(), photo);
        assert!(open_attachment("00abc", &sealed).is_err());
        assert!(open_attachment("00zz", &sealed).is_err());
    }

    #[test]
    fn aes_256_ctr_as_nist_sp_800_38a_gives_it() {
        // F.5.5 CTR-AES256.Encrypt, first block, with the counter block the test names.
        let key = hex::decode("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")
            .unwrap();
        let counter = hex::decode("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff").unwrap();
        let mut block = hex::decode("6bc1bee22e409f96e93d7e117393172a").unwrap();
        let mut cipher = Aes256Ctr::new_from_slices(&key, &counter).unwrap();
        cipher.apply_keystream(&mut block);
        assert_eq!(hex::encode(block), "601ec313775789a5b7a7f504bbf3d228");
    }

    #[test]
    fn a_reference_survives_the_record() {
        let reference = AttachmentRef {
            url: "https://p1.mmcs.icloud.example/abc".to_owned(),
            owner: "owner-1".to_owned(),
            signature: "81d3bd8a".to_owned(),
            key: format!("00{}", "ab".repeat(32)),
            size: Some(27_654),
        };
        assert_eq!(
            AttachmentRef::decode(&reference.encode()),
            Some(reference.clone())
        );
        assert_eq!(reference.signature_base64().as_deref(), Some("gdO9ig=="));
        assert_eq!(AttachmentRef::decode("https://cdn.example/x.jpg"), None);
    }
}
