//! Sealing personal fields: XChaCha20-Poly1305 under a data key per customer, data keys
//! wrapped by the region's master key, customers and providers' message ids named by
//! keyed pseudonyms.
//!
//! Pure functions and types, no I/O: [`crate::keys`] stores the wrapped keys, the codec
//! seals and opens fields with them.

use std::fmt;

use sha2::Sha256;
use zeroize::Zeroizing;

use helpline_domain::Channel;
use helpline_proto::v1 as pb;

use crate::xchacha::{self, NONCE_LEN, TAG_LEN};

/// Why a sealed value or a wrapped key did not open.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("the sealed value does not open with this key")]
    DoesNotOpen,
    #[error("a wrapped data key is malformed: {0}")]
    MalformedKey(&'static str),
    #[error("a master key is 64 hex digits (32 bytes): {0}")]
    MalformedMasterKey(&'static str),
}

/// The region's master key: wraps the customers' data keys and keys the pseudonyms of
/// customers and of providers' message ids.
/// Comes from a secret; never logged (its `Debug` is redacted).
#[derive(Clone)]
pub struct MasterKey(std::sync::Arc<Derived>);

/// The master key and the keys derived from it for each purpose, derived once: every
/// webhook names its customer and every replayed customer key is unwrapped, so deriving
/// per call cost two HMACs each time.
struct Derived {
    master: Zeroizing<[u8; 32]>,
    pseudonym: Zeroizing<[u8; 32]>,
    provider_ref: Zeroizing<[u8; 32]>,
    wrapping: Zeroizing<[u8; 32]>,
}

impl MasterKey {
    fn new(master: [u8; 32]) -> Self {
        let master = Zeroizing::new(master);
        let derived = Derived {
            pseudonym: Zeroizing::new(derive(&*master, b"helpline customer pseudonym")),
            provider_ref: Zeroizing::new(derive(&*master, b"helpline provider message pseudonym")),
            wrapping: Zeroizing::new(derive(&*master, b"helpline data key wrapping")),
            master,
        };
        Self(std::sync::Arc::new(derived))
    }

    /// Reads 64 hex digits, surrounding whitespace ignored (a secret file's newline).
    pub fn from_hex(text: &str) -> Result<Self, SealError> {
        let bytes =
            hex::decode(text.trim()).map_err(|_| SealError::MalformedMasterKey("not hex"))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| SealError::MalformedMasterKey("wrong length"))?;
        Ok(Self::new(key))
    }

    /// A fixed key for `helpline dev`, tests and benchmarks. Production refuses to start on
    /// it (see the binary's `[privacy]` configuration).
    pub fn development() -> Self {
        Self::new(derive(b"helpline development master key, public", b""))
    }

    pub fn is_development(&self) -> bool {
        *self.0.master == *Self::development().0.master
    }

    /// The development key as a configuration would hold it, 64 hex digits: public, like
    /// the key itself, so that a deployment can recognise and refuse it.
    pub fn development_hex() -> String {
        hex::encode(*Self::development().0.master)
    }

    /// The customer's pseudonym: an HMAC of channel and contact under a key derived from
    /// the master key. Stable, so every ticket of one customer shares one data key; not
    /// reversible without the master key, so it may appear in envelopes and KV keys.
    pub fn customer_id(&self, channel: Channel, contact: &str) -> CustomerId {
        let key = &self.0.pseudonym;
        let input = Zeroizing::new(format!("{}:{contact}", channel.as_str()).into_bytes());
        let mut id = [0u8; 16];
        // HKDF's extract step is HMAC-SHA256 keyed with the pseudonym key; 16 bytes are far
        // below its output limit, so expand cannot fail.
        let _ =
            hkdf::Hkdf::<Sha256>::new(Some(key.as_ref()), &input).expand(b"customer id", &mut id);
        CustomerId(hex::encode(id))
    }

    /// A provider's id of a message as a keyed pseudonym: an HMAC of channel and id under
    /// a key of its own derived from the master key. A WhatsApp `wamid` carries the
    /// customer's number, so the id itself is personal; the pseudonym is stable, so a
    /// receipt finds the message egress indexed under it and a redelivered webhook derives
    /// the same ids, but without the master key it can neither be reversed nor checked
    /// against an id someone holds.
    pub fn provider_ref(&self, channel: Channel, provider_message_id: &str) -> ProviderRef {
        let key = &self.0.provider_ref;
        let input =
            Zeroizing::new(format!("{}:{provider_message_id}", channel.as_str()).into_bytes());
        let mut id = [0u8; 16];
        // As for the customer's pseudonym: 16 bytes are far below HKDF's output limit.
        let _ = hkdf::Hkdf::<Sha256>::new(Some(key.as_ref()), &input)
            .expand(b"provider message ref", &mut id);
        ProviderRef(hex::encode(id))
    }

    /// The data key as stored in the key bucket: version 1, key id, nonce, sealed key.
    pub fn wrap(&self, customer: &CustomerId, key: &DataKey) -> Vec<u8> {
        self.wrap_for(customer.as_str(), key)
    }

    pub fn unwrap_key(&self, customer: &CustomerId, bytes: &[u8]) -> Result<DataKey, SealError> {
        self.unwrap_for(customer.as_str(), bytes)
    }

    /// A key made ahead, wrapped for its slot of a block: bound to the slot, not to a
    /// customer (none is known yet), so it opens only where it was put. As long as
    /// [`MasterKey::wrap`]'s output.
    pub fn wrap_slot(&self, at: KeyRef, key: &DataKey) -> Vec<u8> {
        self.wrap_for(&at.label(), key)
    }

    pub fn unwrap_slot(&self, at: KeyRef, bytes: &[u8]) -> Result<DataKey, SealError> {
        self.unwrap_for(&at.label(), bytes)
    }

    /// Wraps `key` bound to `holder`: a customer's pseudonym, or a slot's label (which no
    /// pseudonym can equal).
    fn wrap_for(&self, holder: &str, key: &DataKey) -> Vec<u8> {
        let nonce = random_nonce();
        let aad = wrap_aad(holder, key.id);
        let sealed = xchacha::seal(&self.0.wrapping, &nonce, &aad, key.key.as_ref());
        let mut out = Vec::with_capacity(1 + 4 + nonce.len() + sealed.len());
        out.push(WRAP_VERSION);
        out.extend_from_slice(&key.id.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    fn unwrap_for(&self, holder: &str, bytes: &[u8]) -> Result<DataKey, SealError> {
        let (&version, rest) = bytes
            .split_first()
            .ok_or(SealError::MalformedKey("empty"))?;
        if version != WRAP_VERSION {
            return Err(SealError::MalformedKey("unknown version"));
        }
        if rest.len() != WRAPPED_KEY_LEN - 1 {
            return Err(SealError::MalformedKey("wrong length"));
        }
        let (id, rest) = rest.split_at(4);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce: &[u8; NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| SealError::MalformedKey("wrong nonce length"))?;
        let id = u32::from_be_bytes([id[0], id[1], id[2], id[3]]);
        let plain = Zeroizing::new(
            xchacha::open(&self.0.wrapping, nonce, &wrap_aad(holder, id), sealed)
                .map_err(|_| SealError::DoesNotOpen)?,
        );
        let key: [u8; 32] = plain
            .as_slice()
            .try_into()
            .map_err(|_| SealError::MalformedKey("wrong key length"))?;
        Ok(DataKey {
            id,
            key: Zeroizing::new(key),
        })
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

impl PartialEq for MasterKey {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.0.master.ct_eq(&*other.0.master).into()
    }
}

/// A customer's pseudonym: 32 lower-case hex digits, safe in KV keys and envelopes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CustomerId(String);

impl CustomerId {
    /// Accepts only what [`MasterKey::customer_id`] makes.
    pub fn parse(text: &str) -> Option<Self> {
        let valid = text.len() == 32
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        valid.then(|| Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A block of data keys made ahead, named by 16 random hex digits: its entry in the key
/// bucket is `block.<id>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockId(u64);

impl BlockId {
    /// A fresh random id (never zero).
    pub fn generate() -> Self {
        let mut id = [0u8; 8];
        os_random(&mut id);
        Self(u64::from_be_bytes(id).max(1))
    }

    /// Accepts the 16 lower-case hex digits [`BlockId`]'s `Display` writes.
    pub fn parse(text: &str) -> Option<Self> {
        let valid = text.len() == 16
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        valid
            .then(|| u64::from_str_radix(text, 16).ok())
            .flatten()
            .filter(|id| *id != 0)
            .map(Self)
    }

    /// The block's key in the key bucket.
    pub fn bucket_key(self) -> String {
        format!("{BLOCK_KEY_PREFIX}{self}")
    }

    /// The block named by a key of the key bucket; `None` for a customer's own key.
    pub fn from_bucket_key(key: &str) -> Option<Self> {
        key.strip_prefix(BLOCK_KEY_PREFIX).and_then(Self::parse)
    }
}

/// How a block's key in the key bucket begins; a customer's pseudonym never does.
const BLOCK_KEY_PREFIX: &str = "block.";

impl fmt::Display for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Where a data key made ahead is kept: one slot of one block. A new customer's first
/// event names it, and so binds it to them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyRef {
    pub block: BlockId,
    pub slot: u16,
}

impl KeyRef {
    /// What the key is wrapped for: the master key opens it only for this slot.
    fn label(self) -> String {
        format!("{BLOCK_KEY_PREFIX}{}.{}", self.block, self.slot)
    }
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.block, self.slot)
    }
}

/// A provider's message id as a keyed pseudonym ([`MasterKey::provider_ref`]): 32
/// lower-case hex digits, safe in KV keys, causation ids and log lines.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProviderRef(String);

impl ProviderRef {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProviderRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One customer's data key. Never leaves the process unwrapped.
#[derive(Clone)]
pub struct DataKey {
    id: u32,
    key: Zeroizing<[u8; 32]>,
}

impl DataKey {
    /// A fresh random key with a random, non-zero id.
    pub fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        os_random(key.as_mut());
        let mut id = [0u8; 4];
        os_random(&mut id);
        let id = u32::from_be_bytes(id).max(1);
        Self { id, key }
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    /// Seals one field of one event.
    pub fn seal(&self, place: &FieldPlace<'_>, plain: &[u8]) -> pb::Sealed {
        let nonce = random_nonce();
        let aad = place.aad(self.id);
        let ciphertext = xchacha::seal(&self.key, &nonce, &aad, plain);
        pb::Sealed {
            key_id: self.id,
            nonce: bytes::Bytes::copy_from_slice(&nonce),
            ciphertext: ciphertext.into(),
        }
    }

    /// Opens a field sealed by [`DataKey::seal`] at the same place; anything else (another
    /// event, field, customer or key) does not open.
    pub fn open(&self, place: &FieldPlace<'_>, sealed: &pb::Sealed) -> Result<Vec<u8>, SealError> {
        let nonce: &[u8; NONCE_LEN] = match sealed.nonce[..].try_into() {
            Ok(nonce) if sealed.key_id == self.id => nonce,
            _ => return Err(SealError::DoesNotOpen),
        };
        xchacha::open(&self.key, nonce, &place.aad(self.id), &sealed.ciphertext)
            .map_err(|_| SealError::DoesNotOpen)
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DataKey({}, ***)", self.id)
    }
}

/// Where a sealed value belongs: bound into its associated data.
#[derive(Clone, Copy, Debug)]
pub struct FieldPlace<'a> {
    /// The event id, or `snapshot:<ticket>` for a snapshot.
    pub record: &'a str,
    /// The field's path in the domain event.
    pub field: &'a str,
    pub customer: &'a CustomerId,
}

impl FieldPlace<'_> {
    fn aad(&self, key_id: u32) -> Vec<u8> {
        let mut aad = Vec::with_capacity(64 + self.record.len() + self.field.len());
        aad.extend_from_slice(b"helpline.v1.Sealed\0");
        for part in [self.record, self.field, self.customer.as_str()] {
            aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
            aad.extend_from_slice(part.as_bytes());
        }
        aad.extend_from_slice(&key_id.to_be_bytes());
        aad
    }
}

/// Nonces drawn from the kernel at once, per thread.
const NONCES_PER_DRAW: usize = 128;

/// A fresh random 24-byte nonce. The kernel's random bytes are drawn for many nonces at a
/// time and each is handed out once: a sealed event has several personal fields, and a
/// system call per field was a measurable share of a webhook's work. Nonces are public
/// (stored beside each ciphertext); only their uniqueness matters, which 192 random bits
/// give whether drawn one by one or in a batch.
fn random_nonce() -> [u8; NONCE_LEN] {
    thread_local! {
        static DRAWN: std::cell::RefCell<(Vec<u8>, usize)> = const {
            std::cell::RefCell::new((Vec::new(), 0))
        };
    }
    DRAWN.with(|drawn| {
        let (bytes, used) = &mut *drawn.borrow_mut();
        if *used + NONCE_LEN > bytes.len() {
            bytes.resize(NONCE_LEN * NONCES_PER_DRAW, 0);
            os_random(bytes);
            *used = 0;
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[*used..*used + NONCE_LEN]);
        // Handed out once: the used bytes are overwritten so no later call sees them.
        bytes[*used..*used + NONCE_LEN].fill(0);
        *used += NONCE_LEN;
        nonce
    })
}

/// The kernel's random bytes. Without them no key or nonce can be made safely, and
/// going on with anything else would be worse than stopping, as the `rand` crates'
/// `OsRng` also stops.
fn os_random(bytes: &mut [u8]) {
    use ring::rand::SecureRandom as _;
    if ring::rand::SystemRandom::new().fill(bytes).is_err() {
        panic!("the operating system's random source failed");
    }
}

const WRAP_VERSION: u8 = 1;

/// The length of a wrapped data key: version, key id, nonce, the key and its tag.
pub const WRAPPED_KEY_LEN: usize = 1 + 4 + NONCE_LEN + 32 + TAG_LEN;

fn wrap_aad(holder: &str, key_id: u32) -> Vec<u8> {
    let mut aad = b"helpline data key\0".to_vec();
    aad.extend_from_slice(holder.as_bytes());
    aad.extend_from_slice(&key_id.to_be_bytes());
    aad
}

/// A 32-byte key for one purpose, derived from `secret` (HKDF-SHA256).
fn derive(secret: &[u8], purpose: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's limit of 8160, so expand cannot fail.
    let _ = hkdf::Hkdf::<Sha256>::new(None, secret).expand(purpose, &mut out);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn customer() -> CustomerId {
        MasterKey::development().customer_id(Channel::WhatsApp, "+4915112345678")
    }

    fn place<'a>(record: &'a str, field: &'a str, customer: &'a CustomerId) -> FieldPlace<'a> {
        FieldPlace {
            record,
            field,
            customer,
        }
    }

    #[test]
    fn a_sealed_field_opens_only_at_its_own_place() {
        let key = DataKey::generate();
        let me = customer();
        let sealed = key.seal(&place("event-1", "body.text", &me), b"Hallo");
        assert!(!sealed.ciphertext.windows(5).any(|w| w == b"Hallo"));
        assert_eq!(
            key.open(&place("event-1", "body.text", &me), &sealed)
                .unwrap(),
            b"Hallo"
        );
        for (record, field) in [("event-2", "body.text"), ("event-1", "summary")] {
            assert_eq!(
                key.open(&place(record, field, &me), &sealed),
                Err(SealError::DoesNotOpen),
                "{record} {field}"
            );
        }
        let other = MasterKey::development().customer_id(Channel::WhatsApp, "+4915100000000");
        assert_eq!(
            key.open(&place("event-1", "body.text", &other), &sealed),
            Err(SealError::DoesNotOpen)
        );
        assert_eq!(
            DataKey::generate().open(&place("event-1", "body.text", &me), &sealed),
            Err(SealError::DoesNotOpen)
        );
    }

    #[test]
    fn a_wrapped_key_unwraps_only_for_its_customer_and_master() {
        let master = MasterKey::development();
        let me = customer();
        let key = DataKey::generate();
        let wrapped = master.wrap(&me, &key);
        let unwrapped = master.unwrap_key(&me, &wrapped).unwrap();
        assert_eq!(unwrapped.id(), key.id());
        assert_eq!(*unwrapped.key, *key.key);
        let other = master.customer_id(Channel::Telegram, "+4915112345678");
        assert!(master.unwrap_key(&other, &wrapped).is_err());
        let another_master = MasterKey::from_hex(&"ab".repeat(32)).unwrap();
        assert!(another_master.unwrap_key(&me, &wrapped).is_err());
        assert!(master.unwrap_key(&me, &wrapped[..10]).is_err());
    }

    #[test]
    fn a_key_made_ahead_unwraps_only_for_its_own_slot() {
        let master = MasterKey::development();
        let block = BlockId::generate();
        let at = KeyRef { block, slot: 7 };
        let key = DataKey::generate();
        let wrapped = master.wrap_slot(at, &key);
        assert_eq!(wrapped.len(), WRAPPED_KEY_LEN);
        assert_eq!(master.unwrap_slot(at, &wrapped).unwrap().id(), key.id());
        for elsewhere in [
            KeyRef { block, slot: 8 },
            KeyRef {
                block: BlockId::generate(),
                slot: 7,
            },
        ] {
            assert!(master.unwrap_slot(elsewhere, &wrapped).is_err());
        }
        // Nor as any customer's own key.
        assert!(master.unwrap_key(&customer(), &wrapped).is_err());
    }

    #[test]
    fn a_block_is_named_apart_from_every_customer() {
        let block = BlockId::generate();
        assert_eq!(BlockId::from_bucket_key(&block.bucket_key()), Some(block));
        assert_eq!(BlockId::parse(&block.to_string()), Some(block));
        assert_eq!(BlockId::from_bucket_key(customer().as_str()), None);
        assert!(CustomerId::parse(&block.bucket_key()).is_none());
        assert_eq!(BlockId::parse("0000000000000000"), None);
        assert_eq!(BlockId::parse("ABCDEF0123456789"), None);
    }

    #[test]
    fn the_pseudonym_is_stable_per_channel_and_contact_and_hides_the_contact() {
        let master = MasterKey::development();
        let a = master.customer_id(Channel::WhatsApp, "+4915112345678");
        assert_eq!(a, master.customer_id(Channel::WhatsApp, "+4915112345678"));
        assert_ne!(a, master.customer_id(Channel::Viber, "+4915112345678"));
        assert!(CustomerId::parse(a.as_str()).is_some());
        assert!(!a.as_str().contains("12345678"));
        let other = MasterKey::from_hex(&"01".repeat(32)).unwrap();
        assert_ne!(a, other.customer_id(Channel::WhatsApp, "+4915112345678"));
    }

    #[test]
    fn the_provider_ref_is_stable_keyed_and_hides_the_id() {
        let master = MasterKey::development();
        let wamid = "wamid.HBgLNDkxNTExMjM0NTY3OBUCABIYFDNBQjFDMkQzRTRGNTA2MTcyODM5AA==";
        let a = master.provider_ref(Channel::WhatsApp, wamid);
        assert_eq!(a, master.provider_ref(Channel::WhatsApp, wamid));
        assert_ne!(a, master.provider_ref(Channel::Messenger, wamid));
        assert_ne!(a, master.provider_ref(Channel::WhatsApp, "wamid.other"));
        assert_eq!(a.as_str().len(), 32);
        assert!(
            a.as_str()
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        let other = MasterKey::from_hex(&"01".repeat(32)).unwrap();
        assert_ne!(a, other.provider_ref(Channel::WhatsApp, wamid));
        // Not the customer's pseudonym of the same text: each purpose has its own key.
        assert_ne!(
            a.as_str(),
            master.customer_id(Channel::WhatsApp, wamid).as_str()
        );
    }

    #[test]
    fn nonces_are_never_handed_out_twice_across_draws() {
        let drawn: std::collections::HashSet<Vec<u8>> = (0..3 * NONCES_PER_DRAW + 5)
            .map(|_| random_nonce().to_vec())
            .collect();
        assert_eq!(drawn.len(), 3 * NONCES_PER_DRAW + 5);
        assert!(!drawn.contains(&vec![0u8; NONCE_LEN]));
    }

    #[test]
    fn master_keys_are_read_from_hex_and_never_printed() {
        assert!(MasterKey::from_hex("abc").is_err());
        assert!(MasterKey::from_hex(&format!("{}\n", "0f".repeat(32))).is_ok());
        let key = MasterKey::from_hex(&"0f".repeat(32)).unwrap();
        assert_eq!(format!("{key:?}"), "MasterKey(***)");
        assert!(!key.is_development());
        let development = MasterKey::from_hex(&MasterKey::development_hex()).unwrap();
        assert!(development.is_development());
        assert!(MasterKey::development().is_development());
    }
}
