-- Refunds are booked as negative payments, so this fails on purpose when strict_payments is on.
{{ config(enabled=var('strict_payments')) }}
select payment_id, amount from {{ ref('stg_payments') }} where amount < 0
