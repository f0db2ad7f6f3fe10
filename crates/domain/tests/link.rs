//! One customer across channels: linking and unlinking two contacts, and the group a walk
//! over the links reaches.

use std::collections::BTreeMap;

use helpline_domain::Channel;
use helpline_domain::link::{
    Group, LinkError, LinkRequest, LinkedBy, Links, LinksChanged, MAX_GROUP, MAX_LINKS,
};

/// Contacts named as the event store names them, by a pseudonym; here a short word.
type Contact = &'static str;

const WHATSAPP: Contact = "wa-anna";
const WEB: Contact = "web-anna";
const TELEGRAM: Contact = "tg-anna";

fn link(other: Contact, channel: Channel) -> LinkRequest<Contact> {
    LinkRequest::Link { other, channel }
}

fn unlink(other: Contact) -> LinkRequest<Contact> {
    LinkRequest::Unlink { other }
}

/// The links of a contact after `changes`, each decided on the state before it.
fn given(me: Contact, changes: &[LinkRequest<Contact>]) -> Links<Contact> {
    changes.iter().fold(Links::default(), |links, request| {
        match links.decide(&me, request.clone()) {
            Ok(Some(changed)) => links.evolve(&changed),
            Ok(None) => links,
            Err(e) => panic!("given: {request:?} was refused: {e}"),
        }
    })
}

#[test]
fn linking_a_contact_records_it_with_its_channel_and_the_whole_set() {
    let links = given(WHATSAPP, &[link(TELEGRAM, Channel::Telegram)]);
    let changed = links.decide(&WHATSAPP, link(WEB, Channel::WebChat));
    let expected = LinksChanged {
        linked: BTreeMap::from([(TELEGRAM, Channel::Telegram), (WEB, Channel::WebChat)]),
        change: link(WEB, Channel::WebChat),
    };
    assert_eq!(changed, Ok(Some(expected.clone())));
    let after = links.evolve(&expected);
    assert!(after.is_linked(&WEB));
    assert!(after.is_linked(&TELEGRAM));
}

#[test]
fn linking_twice_changes_nothing_so_an_interrupted_link_is_completed_by_asking_again() {
    let links = given(WHATSAPP, &[link(WEB, Channel::WebChat)]);
    assert_eq!(
        links.decide(&WHATSAPP, link(WEB, Channel::WebChat)),
        Ok(None)
    );
}

#[test]
fn a_contact_is_never_linked_to_itself() {
    let links: Links<Contact> = Links::default();
    assert_eq!(
        links.decide(&WHATSAPP, link(WHATSAPP, Channel::WhatsApp)),
        Err(LinkError::SameContact)
    );
}

#[test]
fn a_contact_takes_at_most_max_links_others() {
    let names: Vec<&'static str> = (0..MAX_LINKS)
        .map(|i| &*Box::leak(format!("web-{i}").into_boxed_str()))
        .collect();
    let requests: Vec<_> = names.iter().map(|n| link(n, Channel::WebChat)).collect();
    let links = given(WHATSAPP, &requests);
    assert_eq!(links.linked().len(), MAX_LINKS);
    assert_eq!(
        links.decide(&WHATSAPP, link(TELEGRAM, Channel::Telegram)),
        Err(LinkError::TooManyLinks)
    );
    // One of those it has already is still no change, not a refusal.
    assert_eq!(
        links.decide(&WHATSAPP, link(names[0], Channel::WebChat)),
        Ok(None)
    );
}

#[test]
fn unlinking_removes_one_link_and_keeps_the_others() {
    let links = given(
        WHATSAPP,
        &[
            link(WEB, Channel::WebChat),
            link(TELEGRAM, Channel::Telegram),
        ],
    );
    let changed = links
        .decide(&WHATSAPP, unlink(WEB))
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("the link was there"));
    assert_eq!(
        changed.linked,
        BTreeMap::from([(TELEGRAM, Channel::Telegram)])
    );
    let after = links.evolve(&changed);
    assert!(!after.is_linked(&WEB));
}

#[test]
fn unlinking_two_contacts_that_are_not_linked_changes_nothing() {
    let links = given(WHATSAPP, &[link(WEB, Channel::WebChat), unlink(WEB)]);
    assert_eq!(links.decide(&WHATSAPP, unlink(WEB)), Ok(None));
    assert!(links.linked().is_empty());
}

#[test]
fn who_linked_reads_back_as_written() {
    for by in [
        LinkedBy::Agent(helpline_domain::AgentId("anna".to_owned())),
        LinkedBy::OneTimeCode,
    ] {
        assert_eq!(LinkedBy::parse(&by.as_string()), Some(by));
    }
    assert_eq!(LinkedBy::parse("agent:"), None);
    assert_eq!(LinkedBy::parse("someone"), None);
}

/// Walks the group from `first` over `ledgers` (a contact's links as its ledger holds
/// them; a contact without a ledger has none).
fn walk(first: Contact, ledgers: &[(Contact, Vec<(Contact, Channel)>)]) -> Group<Contact> {
    let mut group = Group::of(first);
    while let Some(contact) = group.next_to_read() {
        let links = ledgers
            .iter()
            .find(|(c, _)| *c == contact)
            .map(|(_, linked)| Links::from_linked(linked.iter().copied().collect()))
            .unwrap_or_default();
        group.learn(&links);
    }
    group
}

#[test]
fn a_contact_alone_is_a_group_of_one() {
    let group = walk(WHATSAPP, &[]);
    assert_eq!(group.members().copied().collect::<Vec<_>>(), [WHATSAPP]);
}

#[test]
fn the_group_reaches_contacts_through_others_each_after_the_one_it_came_through() {
    // WhatsApp ↔ web chat ↔ Telegram: the Telegram contact was linked to the web chat one.
    let ledgers = [
        (WHATSAPP, vec![(WEB, Channel::WebChat)]),
        (
            WEB,
            vec![(WHATSAPP, Channel::WhatsApp), (TELEGRAM, Channel::Telegram)],
        ),
        (TELEGRAM, vec![(WEB, Channel::WebChat)]),
    ];
    let group = walk(WHATSAPP, &ledgers);
    assert_eq!(
        group.members().copied().collect::<Vec<_>>(),
        [WHATSAPP, WEB, TELEGRAM]
    );
    assert_eq!(
        group.members_with_channels(),
        [
            (WHATSAPP, Some(Channel::WhatsApp)),
            (WEB, Some(Channel::WebChat)),
            (TELEGRAM, Some(Channel::Telegram))
        ]
    );
    // From the other end, the same people, in the order reached from there.
    let group = walk(TELEGRAM, &ledgers);
    assert_eq!(
        group.members().copied().collect::<Vec<_>>(),
        [TELEGRAM, WEB, WHATSAPP]
    );
}

#[test]
fn after_an_unlink_the_group_no_longer_reaches_the_other_contact() {
    let ledgers = [(WHATSAPP, vec![]), (WEB, vec![])];
    assert_eq!(walk(WHATSAPP, &ledgers).len(), 1);
    assert_eq!(walk(WEB, &ledgers).len(), 1);
}

#[test]
fn a_half_written_link_is_followed_from_the_side_that_holds_it() {
    // The link's second write never happened: WhatsApp names web chat, web chat names
    // nobody yet. From WhatsApp both are reached; from web chat only itself, until the
    // link is asked again.
    let ledgers = [(WHATSAPP, vec![(WEB, Channel::WebChat)])];
    assert_eq!(walk(WHATSAPP, &ledgers).len(), 2);
    assert_eq!(walk(WEB, &ledgers).len(), 1);
}

#[test]
fn a_group_stops_growing_at_max_group_and_says_so() {
    // A chain of contacts longer than a person has.
    let names: Vec<&'static str> = (0..MAX_GROUP + 5)
        .map(|i| &*Box::leak(format!("c{i}").into_boxed_str()))
        .collect();
    let ledgers: Vec<_> = names
        .windows(2)
        .map(|pair| (pair[0], vec![(pair[1], Channel::WebChat)]))
        .collect();
    let group = walk(names[0], &ledgers);
    assert_eq!(group.len(), MAX_GROUP);
    assert!(group.truncated);
}
