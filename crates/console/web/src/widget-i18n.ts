// The web-chat widget's words, in every language the bot's flows speak (crates/flows/flows).
// The widget speaks the language its <script> tag names (data-lang), else the first of
// the browser's languages it has, else English. What the bot and the agents write comes
// from helpline in the customer's language; these are only the widget's own labels.

export type WidgetWords = {
  open: string;
  close: string;
  title: string;
  message: string;
  placeholder: string;
  send: string;
  sending: string;
  not_sent: string;
  connecting: string;
  reconnecting: string;
  you: string;
  us: string;
  rate: string;
  stars: string;
  erased: string;
  refused: string;
};

const en: WidgetWords = {
  open: "Chat with us",
  close: "Close the chat",
  title: "Customer service",
  message: "Your message",
  placeholder: "Write a message…",
  send: "Send",
  sending: "sending…",
  not_sent: "not sent yet, trying again…",
  connecting: "Connecting…",
  reconnecting: "Connection lost. Reconnecting…",
  you: "You",
  us: "Customer service",
  rate: "Rate our service",
  stars: "{0} of 5 stars",
  erased: "(deleted)",
  refused: "This message could not be sent.",
};

const WORDS: Record<string, WidgetWords> = {
  en,
  de: {
    open: "Chatten Sie mit uns",
    close: "Chat schließen",
    title: "Kundenservice",
    message: "Ihre Nachricht",
    placeholder: "Nachricht schreiben…",
    send: "Senden",
    sending: "wird gesendet…",
    not_sent: "noch nicht gesendet, neuer Versuch…",
    connecting: "Verbindung wird hergestellt…",
    reconnecting: "Verbindung unterbrochen. Neuer Verbindungsversuch…",
    you: "Sie",
    us: "Kundenservice",
    rate: "Bewerten Sie unseren Service",
    stars: "{0} von 5 Sternen",
    erased: "(gelöscht)",
    refused: "Diese Nachricht konnte nicht gesendet werden.",
  },
  fr: {
    open: "Discutez avec nous",
    close: "Fermer la discussion",
    title: "Service client",
    message: "Votre message",
    placeholder: "Écrivez un message…",
    send: "Envoyer",
    sending: "envoi…",
    not_sent: "pas encore envoyé, nouvel essai…",
    connecting: "Connexion…",
    reconnecting: "Connexion perdue. Reconnexion…",
    you: "Vous",
    us: "Service client",
    rate: "Évaluez notre service",
    stars: "{0} étoiles sur 5",
    erased: "(supprimé)",
    refused: "Ce message n’a pas pu être envoyé.",
  },
  es: {
    open: "Chatea con nosotros",
    close: "Cerrar el chat",
    title: "Atención al cliente",
    message: "Tu mensaje",
    placeholder: "Escribe un mensaje…",
    send: "Enviar",
    sending: "enviando…",
    not_sent: "aún no enviado, reintentando…",
    connecting: "Conectando…",
    reconnecting: "Conexión perdida. Reconectando…",
    you: "Tú",
    us: "Atención al cliente",
    rate: "Valora nuestro servicio",
    stars: "{0} de 5 estrellas",
    erased: "(eliminado)",
    refused: "No se pudo enviar este mensaje.",
  },
  it: {
    open: "Chatta con noi",
    close: "Chiudi la chat",
    title: "Servizio clienti",
    message: "Il tuo messaggio",
    placeholder: "Scrivi un messaggio…",
    send: "Invia",
    sending: "invio…",
    not_sent: "non ancora inviato, nuovo tentativo…",
    connecting: "Connessione…",
    reconnecting: "Connessione persa. Nuova connessione…",
    you: "Tu",
    us: "Servizio clienti",
    rate: "Valuta il nostro servizio",
    stars: "{0} stelle su 5",
    erased: "(eliminato)",
    refused: "Impossibile inviare questo messaggio.",
  },
  pt: {
    open: "Converse connosco",
    close: "Fechar o chat",
    title: "Apoio ao cliente",
    message: "A sua mensagem",
    placeholder: "Escreva uma mensagem…",
    send: "Enviar",
    sending: "a enviar…",
    not_sent: "ainda não enviada, nova tentativa…",
    connecting: "A ligar…",
    reconnecting: "Ligação perdida. A ligar de novo…",
    you: "Você",
    us: "Apoio ao cliente",
    rate: "Avalie o nosso serviço",
    stars: "{0} de 5 estrelas",
    erased: "(eliminada)",
    refused: "Não foi possível enviar esta mensagem.",
  },
  nl: {
    open: "Chat met ons",
    close: "Chat sluiten",
    title: "Klantenservice",
    message: "Uw bericht",
    placeholder: "Schrijf een bericht…",
    send: "Versturen",
    sending: "wordt verstuurd…",
    not_sent: "nog niet verstuurd, nieuwe poging…",
    connecting: "Verbinden…",
    reconnecting: "Verbinding verbroken. Opnieuw verbinden…",
    you: "U",
    us: "Klantenservice",
    rate: "Beoordeel onze service",
    stars: "{0} van 5 sterren",
    erased: "(verwijderd)",
    refused: "Dit bericht kon niet worden verstuurd.",
  },
  pl: {
    open: "Czat z nami",
    close: "Zamknij czat",
    title: "Obsługa klienta",
    message: "Twoja wiadomość",
    placeholder: "Napisz wiadomość…",
    send: "Wyślij",
    sending: "wysyłanie…",
    not_sent: "jeszcze nie wysłano, ponowna próba…",
    connecting: "Łączenie…",
    reconnecting: "Utracono połączenie. Ponowne łączenie…",
    you: "Ty",
    us: "Obsługa klienta",
    rate: "Oceń naszą obsługę",
    stars: "{0} z 5 gwiazdek",
    erased: "(usunięto)",
    refused: "Nie udało się wysłać tej wiadomości.",
  },
  cs: {
    open: "Napište nám",
    close: "Zavřít chat",
    title: "Zákaznický servis",
    message: "Vaše zpráva",
    placeholder: "Napište zprávu…",
    send: "Odeslat",
    sending: "odesílá se…",
    not_sent: "zatím neodesláno, nový pokus…",
    connecting: "Připojování…",
    reconnecting: "Spojení ztraceno. Znovu se připojuje…",
    you: "Vy",
    us: "Zákaznický servis",
    rate: "Ohodnoťte naše služby",
    stars: "{0} z 5 hvězdiček",
    erased: "(smazáno)",
    refused: "Tuto zprávu nelze odeslat.",
  },
  hu: {
    open: "Csevegjen velünk",
    close: "Csevegés bezárása",
    title: "Ügyfélszolgálat",
    message: "Az Ön üzenete",
    placeholder: "Írjon üzenetet…",
    send: "Küldés",
    sending: "küldés…",
    not_sent: "még nincs elküldve, újrapróbálás…",
    connecting: "Kapcsolódás…",
    reconnecting: "A kapcsolat megszakadt. Újrakapcsolódás…",
    you: "Ön",
    us: "Ügyfélszolgálat",
    rate: "Értékelje szolgáltatásunkat",
    stars: "5-ből {0} csillag",
    erased: "(törölve)",
    refused: "Ezt az üzenetet nem sikerült elküldeni.",
  },
  da: {
    open: "Chat med os",
    close: "Luk chatten",
    title: "Kundeservice",
    message: "Din besked",
    placeholder: "Skriv en besked…",
    send: "Send",
    sending: "sender…",
    not_sent: "ikke sendt endnu, prøver igen…",
    connecting: "Forbinder…",
    reconnecting: "Forbindelsen blev afbrudt. Forbinder igen…",
    you: "Dig",
    us: "Kundeservice",
    rate: "Bedøm vores service",
    stars: "{0} af 5 stjerner",
    erased: "(slettet)",
    refused: "Beskeden kunne ikke sendes.",
  },
  sv: {
    open: "Chatta med oss",
    close: "Stäng chatten",
    title: "Kundtjänst",
    message: "Ditt meddelande",
    placeholder: "Skriv ett meddelande…",
    send: "Skicka",
    sending: "skickar…",
    not_sent: "inte skickat än, försöker igen…",
    connecting: "Ansluter…",
    reconnecting: "Anslutningen bröts. Ansluter igen…",
    you: "Du",
    us: "Kundtjänst",
    rate: "Betygsätt vår service",
    stars: "{0} av 5 stjärnor",
    erased: "(raderat)",
    refused: "Meddelandet kunde inte skickas.",
  },
  fi: {
    open: "Keskustele kanssamme",
    close: "Sulje keskustelu",
    title: "Asiakaspalvelu",
    message: "Viestisi",
    placeholder: "Kirjoita viesti…",
    send: "Lähetä",
    sending: "lähetetään…",
    not_sent: "ei vielä lähetetty, yritetään uudelleen…",
    connecting: "Yhdistetään…",
    reconnecting: "Yhteys katkesi. Yhdistetään uudelleen…",
    you: "Sinä",
    us: "Asiakaspalvelu",
    rate: "Arvioi palvelumme",
    stars: "{0}/5 tähteä",
    erased: "(poistettu)",
    refused: "Viestiä ei voitu lähettää.",
  },
  el: {
    open: "Συνομιλήστε μαζί μας",
    close: "Κλείσιμο συνομιλίας",
    title: "Εξυπηρέτηση πελατών",
    message: "Το μήνυμά σας",
    placeholder: "Γράψτε ένα μήνυμα…",
    send: "Αποστολή",
    sending: "αποστολή…",
    not_sent: "δεν στάλθηκε ακόμη, νέα προσπάθεια…",
    connecting: "Σύνδεση…",
    reconnecting: "Η σύνδεση χάθηκε. Επανασύνδεση…",
    you: "Εσείς",
    us: "Εξυπηρέτηση πελατών",
    rate: "Αξιολογήστε την εξυπηρέτησή μας",
    stars: "{0} από 5 αστέρια",
    erased: "(διαγράφηκε)",
    refused: "Δεν ήταν δυνατή η αποστολή αυτού του μηνύματος.",
  },
};

/// The languages the widget speaks.
export const WIDGET_LANGUAGES = Object.keys(WORDS);

/// The widget's words in `wanted` (the tag's data-lang) or the browser's first language
/// the widget has, and that language's code.
export function widgetWords(wanted: string | null, browser: readonly string[]): [string, WidgetWords] {
  for (const tag of [wanted ?? "", ...browser]) {
    const code = tag.toLowerCase().split("-")[0];
    const words = WORDS[code];
    if (words) return [code, words];
  }
  return ["en", en];
}

export function fill(text: string, ...values: (string | number)[]): string {
  return values.reduce<string>((done, value, i) => done.replace(`{${i}}`, String(value)), text);
}
