{#- A source's timestamp (with time zone, as dlt loads it) as a timestamp without time zone in UTC.
    A plain cast differs by warehouse: DuckDB converts to the session's time zone (a laptop's local
    time), Snowflake keeps the value's own offset. -#}
{% macro to_utc_timestamp(column_name) -%}
    {{ return(adapter.dispatch('to_utc_timestamp')(column_name)) }}
{%- endmacro %}

{% macro default__to_utc_timestamp(column_name) -%}
    cast({{ column_name }} as timestamp)
{%- endmacro %}

{% macro duckdb__to_utc_timestamp(column_name) -%}
    timezone('UTC', cast({{ column_name }} as timestamptz))
{%- endmacro %}

{% macro snowflake__to_utc_timestamp(column_name) -%}
    cast(convert_timezone('UTC', cast({{ column_name }} as timestamp_tz)) as timestamp_ntz)
{%- endmacro %}
