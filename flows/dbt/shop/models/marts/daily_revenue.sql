-- Revenue per order date. Incremental: a run recomputes only the dates that have an order or a
-- payment loaded since the last run (late changes such as refunds land on old dates, so a
-- "last N days" window would miss them). dlt load ids are fixed-width epoch strings, so they
-- compare correctly as text.
{{
    config(
        materialized='incremental',
        unique_key='order_date',
        incremental_strategy='delete+insert',
    )
}}

with changed_dates as (
    select distinct order_date
    from {{ ref('fct_orders') }}
    {% if is_incremental() %}
    where load_id > (select coalesce(max(max_load_id), '') from {{ this }})
    {% endif %}
)

select
    o.order_date,
    count(*) as order_count,
    sum(case when o.status not in ('cancelled', 'returned') then o.amount_paid else 0 end) as revenue,
    sum(o.amount_refunded) as refunded,
    max(o.load_id) as max_load_id
from {{ ref('fct_orders') }} as o
inner join changed_dates as d on o.order_date = d.order_date
group by o.order_date
