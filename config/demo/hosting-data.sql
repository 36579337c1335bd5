-- Seed rows for the demo database `hosting`: invented people only (reserved example
-- domains, fictitious names, documentation IP ranges, test IBANs). Loaded once, right after
-- hosting-schema.sql. Dates mix long-overdue rows (deleted or anonymised at once by the
-- enforcer), rows due in the coming months and rows that are still within their period.

INSERT INTO customers (id, nic_handle, first_name, last_name, email, phone, postal_address, country, created_at, closed_at) VALUES
    (1, 'ad1234-lth', 'Ada',     'Lindqvist', 'ada.lindqvist@example.com',  '+33 1 99 00 01 01', '12 rue des Exemples, 59100 Roubaix',  'FR', '2016-03-14 09:12:00+00', NULL),
    (2, 'bo5678-lth', 'Boris',   'Kerwin',    'boris.kerwin@example.net',   '+49 30 9900 0202',  'Musterweg 7, 10115 Berlin',          'DE', '2017-06-02 15:40:00+00', '2019-11-30 18:00:00+00'),
    (3, 'ce9012-lth', 'Celia',   'Moreau',    'celia.moreau@example.org',   '+33 4 99 00 03 03', '3 place du Test, 69002 Lyon',        'FR', '2019-01-20 08:05:00+00', '2025-06-15 10:30:00+00'),
    (4, 'da3456-lth', 'Dario',   'Fenwick',   'dario.fenwick@example.com',  '+44 20 7946 0404',  '4 Sample Street, London E1 6AN',     'GB', '2024-09-09 12:00:00+00', NULL),
    (5, 'ev7890-lth', 'Eveline', 'Okafor',    'eveline.okafor@example.net', NULL,                'Voorbeeldstraat 5, 1012 AB Amsterdam', 'NL', '2021-02-11 17:25:00+00', NULL);

INSERT INTO support_tickets (id, customer_id, subject_line, body, contact_email, created_at, last_message_at) VALUES
    (1, 1, 'VPS unreachable after reboot',       'My VPS does not answer ping since the reboot.', 'ada.lindqvist@example.com',  '2026-10-02 08:00:00+00', '2026-10-03 14:20:00+00'),
    (2, 2, 'Invoice address change',             'Please update the billing address.',            'boris.kerwin@example.net',   '2018-04-10 10:00:00+00', '2018-04-12 09:30:00+00'),
    (3, 3, 'DNS zone not propagating',           'The new A record is not visible.',              'celia.moreau@example.org',   '2024-11-20 16:45:00+00', '2025-01-05 11:00:00+00'),
    (4, 5, 'Question about backup retention',    'How long are snapshots kept?',                  'eveline.okafor@example.net', '2025-12-01 09:15:00+00', '2025-12-01 13:40:00+00');

INSERT INTO orders (id, customer_id, service, amount_cents, ordered_at) VALUES
    (1, 1, 'vps-essential-2',      1199, '2016-03-14 09:20:00+00'),
    (2, 2, 'web-hosting-pro',      7188, '2017-06-02 15:45:00+00'),
    (3, 3, 'dedicated-advance-1', 89900, '2019-01-20 08:10:00+00'),
    (4, 4, 'object-storage-1tb',   1080, '2024-09-09 12:05:00+00'),
    (5, 5, 'domain-renewal',        999, '2025-02-11 17:30:00+00');

INSERT INTO invoices (id, customer_id, order_id, billing_name, billing_address, amount_cents, issued_at) VALUES
    (1, 1, 1, 'Ada Lindqvist',  '12 rue des Exemples, 59100 Roubaix',    1199, '2016-03-14 09:21:00+00'),
    (2, 2, 2, 'Kerwin GmbH',    'Musterweg 7, 10115 Berlin',             7188, '2017-06-02 15:46:00+00'),
    (3, 3, 3, 'Celia Moreau',   '3 place du Test, 69002 Lyon',          89900, '2019-01-20 08:11:00+00'),
    (4, 4, 4, 'Dario Fenwick',  '4 Sample Street, London E1 6AN',        1080, '2024-09-09 12:06:00+00'),
    (5, 5, 5, 'Eveline Okafor', 'Voorbeeldstraat 5, 1012 AB Amsterdam',   999, '2025-02-11 17:31:00+00');

INSERT INTO payment_methods (id, customer_id, kind, holder_name, pan_last4, iban, expires_on, subscription_cancelled_at, revoked_at, keep_for_purchases, purchase_consent_withdrawn_at) VALUES
    (1, 1, 'card',       'ADA LINDQVIST',  '4242', NULL,                          '2028-09-30', NULL,                     NULL,                     false, NULL),
    (2, 2, 'sepa_debit', 'Kerwin GmbH',    NULL,   'DE89370400440532013000',      NULL,         '2019-11-30 18:00:00+00', NULL,                     false, NULL),
    (3, 3, 'card',       'CELIA MOREAU',   '1881', NULL,                          '2027-03-31', '2025-06-15 10:30:00+00', NULL,                     true,  NULL),
    (4, 5, 'card',       'EVELINE OKAFOR', '0005', NULL,                          '2025-08-31', NULL,                     NULL,                     false, NULL);

INSERT INTO job_applications (id, first_name, last_name, email, cv_text, status, last_contact_at, retention_consent) VALUES
    (1, 'Farid',  'Lemaire', 'farid.lemaire@example.org', 'Site reliability engineer, 6 years of Linux operations.', 'rejected',     '2024-05-17 10:00:00+00', false),
    (2, 'Greta',  'Hansen',  'greta.hansen@example.com',  'Network engineer, BGP and data-centre fabrics.',          'rejected',     '2024-02-01 09:00:00+00', true),
    (3, 'Hugo',   'Petit',   'hugo.petit@example.net',    'Junior developer, Python and Go.',                        'interviewing', '2026-11-10 15:30:00+00', false);

INSERT INTO event_registrations (id, event_name, full_name, email, company, job_title, event_ends_at, objected_at) VALUES
    (1, 'Cloud Summit 2025',      'Ines Varga',     'ines.varga@example.com',   'Example Analytics', 'CTO',              '2025-11-20 18:00:00+00', NULL),
    (2, 'Cloud Summit 2025',      'Jonas Becker',   'jonas.becker@example.org', 'Sample Retail',     'Platform lead',    '2025-11-20 18:00:00+00', '2025-12-01 08:00:00+00'),
    (3, 'Kubernetes Day 2026',    'Kaito Mori',     'kaito.mori@example.net',   NULL,                'DevOps engineer',  '2026-10-08 17:00:00+00', NULL);

INSERT INTO marketing_contacts (id, customer_id, email, basis, consent_withdrawn_at, objected_at, last_contact_at) VALUES
    (1, 1,    'ada.lindqvist@example.com', 'legitimate_interest', NULL,                     NULL,                     '2026-09-01 10:00:00+00'),
    (2, NULL, 'lena.novak@example.org',    'consent',             NULL,                     NULL,                     '2026-06-15 12:00:00+00'),
    (3, NULL, 'marco.rossi@example.com',   'consent',             '2026-11-02 07:45:00+00', NULL,                     '2026-03-03 09:00:00+00'),
    (4, 2,    'boris.kerwin@example.net',  'legitimate_interest', NULL,                     NULL,                     '2019-10-01 10:00:00+00');

INSERT INTO info_requests (id, email, full_name, content, received_at, handled_at) VALUES
    (1, 'nora.berg@example.com',   'Nora Berg',   'Do you offer hosting in Nordic data centres?', '2025-03-03 11:00:00+00', '2025-03-04 09:00:00+00'),
    (2, 'omar.haddad@example.net', 'Omar Haddad', 'Pricing for 50 managed databases?',            '2026-11-20 16:00:00+00', NULL);

INSERT INTO call_recordings (id, customer_id, agent_id, audio_ref, recorded_at, objected) VALUES
    (1, 1, 101, 'recordings/2026/05/call-000101.opus', '2026-05-12 10:15:00+00', false),
    (2, 3, 102, 'recordings/2026/10/call-000102.opus', '2026-10-21 14:05:00+00', false),
    (3, 5, 101, 'recordings/2026/11/call-000103.opus', '2026-11-18 09:30:00+00', true);

INSERT INTO satisfaction_surveys (id, customer_id, respondent_email, score, comments, submitted_at) VALUES
    (1, 1, 'ada.lindqvist@example.com',  9, 'Fast support answer.',           '2025-07-22 18:10:00+00'),
    (2, 4, 'dario.fenwick@example.com',  6, 'Console could be clearer.',      '2026-10-30 20:00:00+00'),
    (3, 5, 'eveline.okafor@example.net', 8, NULL,                             '2026-02-14 12:30:00+00');

INSERT INTO payment_defaults (id, customer_id, amount_cents, defaulted_at) VALUES
    (1, 2, 7188, '2019-12-31 00:00:00+00'),
    (2, 5,  999, '2026-03-11 00:00:00+00');

INSERT INTO fraud_signals (id, customer_id, ip_address, geo, score, observed_at) VALUES
    (1, 2, '198.51.100.23', 'DE-BE', 0.91, '2019-11-02 03:14:00+00'),
    (2, 4, '203.0.113.77',  'GB-LND', 0.35, '2026-08-19 22:40:00+00');

INSERT INTO identity_documents (id, customer_id, kind, document_ref, verified_at, fraud_suspected) VALUES
    (1, 4, 'passport',         'kyc/2026/11/doc-004-a.pdf', '2026-11-05 10:00:00+00', false),
    (2, 2, 'id_card',          'kyc/2019/11/doc-002-a.pdf', '2019-11-03 09:00:00+00', true),
    (3, 5, 'proof_of_address', 'kyc/2026/10/doc-005-a.pdf', '2026-10-28 08:30:00+00', false);

INSERT INTO dpo_requests (id, customer_id, request_text, answer_text, id_proof_ref, received_at, answered_at) VALUES
    (1, 3, 'Please send me a copy of my personal data.', 'Export sent by secure link.', 'dpo/2025/07/idproof-003.pdf', '2025-07-01 09:00:00+00', '2025-07-20 16:00:00+00'),
    (2, 1, 'Which partners receive my data?',            NULL,                          NULL,                          '2026-11-24 13:00:00+00', NULL);

INSERT INTO data_breaches (id, description, affected_subjects, detected_at) VALUES
    (1, 'Misconfigured object-storage bucket exposed support attachments', 42, '2020-08-14 06:30:00+00'),
    (2, 'Phishing of one support account; no data exfiltrated',             0, '2026-04-02 11:20:00+00');

INSERT INTO connection_logs (id, customer_id, ip_address, logged_at) VALUES
    (1, 1, '192.0.2.10',    '2026-11-25 07:58:00+00'),
    (2, 3, '192.0.2.33',    '2025-06-14 21:02:00+00'),
    (3, 4, '2001:db8::4',   '2026-11-01 12:00:00+00');

INSERT INTO legal_holds (id, customer_id, case_ref, placed_at, released_at) VALUES
    (1, 2, 'CASE-2020-017 unpaid invoices', '2020-02-01 09:00:00+00', NULL),
    (2, 3, 'CASE-2025-044 chargeback',      '2025-07-01 09:00:00+00', '2025-12-19 17:00:00+00');

-- Identities continue after the explicit ids above.
DO $$
DECLARE
    t text;
BEGIN
    FOR t IN SELECT table_name FROM information_schema.tables
             WHERE table_schema = 'public' AND table_type = 'BASE TABLE'
    LOOP
        EXECUTE format(
            'SELECT setval(pg_get_serial_sequence(%L, ''id''), coalesce((SELECT max(id) FROM %I), 0) + 1, false)',
            t, t);
    END LOOP;
END
$$;
